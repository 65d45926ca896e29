// Driven by tests/conformance/test_conformance_mqttjs.py: connect to a
// presigned ws:// URL with mqtt.js, subscribe, print one JSON line per event
// on stdout, exit after the first message (or with code 2 on error/timeout).
import mqtt from "mqtt";

const [url, clientId, topic] = process.argv.slice(2);
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const timer = setTimeout(() => {
  emit({ event: "timeout" });
  process.exit(2);
}, 20000);

const client = mqtt.connect(url, {
  clientId,
  protocolVersion: 4,
  keepalive: 60,
  reconnectPeriod: 0,
  clean: true,
});
client.on("connect", () => {
  emit({ event: "connect" });
  client.subscribe(topic, { qos: 1 }, (err, granted) => {
    if (err) {
      emit({ event: "error", message: String(err) });
      process.exit(2);
    }
    emit({ event: "subscribed", granted: granted.map((g) => g.qos) });
  });
});
client.on("message", (receivedTopic, payload) => {
  emit({ event: "message", topic: receivedTopic, payload: payload.toString("utf8") });
  clearTimeout(timer);
  client.end(false, () => process.exit(0));
});
client.on("error", (err) => {
  emit({ event: "error", message: String(err) });
  process.exit(2);
});
