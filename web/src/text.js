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

// Written as escapes: the characters themselves are invisible in source.
// The bidirectional formatting characters (Unicode Standard Annex #9,
// "Explicit Directional Formatting Characters" and "Implicit Directional
// Marks"): ALM, LRM, RLM, LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI.
const BIDI_FORMATTING = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069";
// Control characters (Unicode Cc: C0, DEL, C1) but tab and newline.
const CONTROLS = "\u0000-\u0008\u000b-\u001f\u007f-\u009f";
const NOT_SHOWN = new RegExp(`[${CONTROLS}${BIDI_FORMATTING}]`, "g");

/**
 * `text` someone else wrote, fit to show: without control characters (but
 * tab and newline) and bidirectional formatting characters. The same policy
 * as the Python SDK's displays (client/iotnotify/display_text.py
 * plain_text): a U+202E RIGHT-TO-LEFT OVERRIDE shows "exe.live" for
 * "evil.exe", and dir="auto" isolates a piece of text from the page, not the
 * text from its own override. Right-to-left text keeps its direction (the
 * bidi algorithm needs no marks for that); joiners, variation selectors and
 * emoji tag characters stay. Removed, not replaced: a replacement character
 * would be noise where nothing was visible.
 * @param {string} text
 * @returns {string}
 */
export function plainText(text) {
  return text.replace(NOT_SHOWN, "");
}
