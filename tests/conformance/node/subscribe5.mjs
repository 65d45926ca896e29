// Driven by tests/conformance/test_conformance_mqttjs.py: mqtt.js in MQTT 5
// mode on a presigned ws:// URL. Subscribes to a forbidden topic (expects
// reason 0x87 and a live connection), then to its own; prints one JSON line
// per event on stdout and exits after the first message (code 2 on
// error/timeout or an unexpected close).
import mqtt from "mqtt";

const [url, clientId, forbidden, topic] = process.argv.slice(2);
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const fail = (message) => {
  emit({ event: "error", message });
  process.exit(2);
};
const timer = setTimeout(() => fail("timeout"), 20000);
let ending = false; // set once the script closes the connection itself

const client = mqtt.connect(url, {
  clientId,
  protocolVersion: 5,
  keepalive: 60,
  reconnectPeriod: 0,
  clean: true,
});
client.on("connect", (connack) => {
  emit({
    event: "connect",
    reasonCode: connack.reasonCode,
    topicAliasMaximum: connack.properties?.topicAliasMaximum,
  });
  // The third argument is the SUBACK packet: its reason codes, failures included.
  client.subscribe(forbidden, { qos: 1 }, (err, _granted, suback) => {
    emit({ event: "subscribed", error: err ? err.message : null, reasonCodes: suback?.granted ?? null });
    client.subscribe(topic, { qos: 1 }, (err2, _granted2, suback2) => {
      if (err2) fail(String(err2));
      emit({ event: "subscribed", error: null, reasonCodes: suback2.granted });
    });
  });
});
client.on("message", (receivedTopic, payload, packet) => {
  emit({
    event: "message",
    topic: receivedTopic,
    payload: payload.toString("utf8"),
    userProperties: packet.properties?.userProperties ?? null,
    contentType: packet.properties?.contentType ?? null,
  });
  clearTimeout(timer);
  ending = true;
  client.end(false, () => process.exit(0));
});
client.on("close", () => {
  if (!ending) fail("connection closed");
});
client.on("error", (err) => fail(String(err)));
