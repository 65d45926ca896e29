// Long text, kept to a size the page can show: a notification body may be up
// to 128 KB (the IoT payload limit), which as one paragraph is a list item
// tens of thousands of pixels tall. The page shows a clamped start and a
// "Show more" button; the full text stays one click away.

/**
 * The start of `text`: at most `maxChars` characters and `maxLines` lines,
 * with "…" when something was cut.
 * @param {string} text
 * @param {{maxChars?: number, maxLines?: number}} [limits]
 * @returns {{text: string, clamped: boolean}}
 */
export function clampText(text, { maxChars = 600, maxLines = 8 } = {}) {
  let end = Math.min(text.length, maxChars);
  let newlines = 0;
  for (let i = 0; i < end; i += 1) {
    if (text.charCodeAt(i) === 10 && ++newlines === maxLines) {
      end = i;
      break;
    }
  }
  if (end >= text.length) return { text, clamped: false };
  // Do not split a surrogate pair (an emoji) in two.
  const code = text.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end -= 1;
  return { text: `${text.slice(0, end).trimEnd()}…`, clamped: true };
}
