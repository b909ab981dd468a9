// An lwm2m-node-lib (LwM2M 1.0) server on the UDP port given on the command line.
// It prints one JSON line per thing it sees (ready, registration, update,
// unregistration, read result) and takes commands on stdin, one a line:
//   read ENDPOINT OBJECT INSTANCE RESOURCE
// An optional second argument is the Accept it puts on reads (e.g. text/plain);
// without it lwm2m-node-lib sends no Accept option.
"use strict";
const readline = require("readline");
const OutgoingMessage = require("coap/lib/outgoing_message");
const lwm2m = require("lwm2m-node-lib");

// lwm2m-node-lib answers a Register with ONE Location-Path option "rd/1"
// (lib/services/server/registration.js: setOption('Location-Path', root + 'rd/' + id)),
// but each Location-Path option is one path segment (RFC 7252 §5.10.7): "rd/1"
// would be the single segment rd%2F1. Give it as the two options it means.
// NODE_SERVER_RAW_LOCATION=1 leaves the library's answer as it is.
if (!process.env.NODE_SERVER_RAW_LOCATION) {
  const setOption = OutgoingMessage.prototype.setOption;
  OutgoingMessage.prototype.setOption = function (name, values) {
    if (name === "Location-Path" && typeof values === "string") {
      values = values.split("/").filter((segment) => segment);
    }
    return setOption.call(this, name, values);
  };
}

const [port, accept] = process.argv.slice(2);
const config = {
  port: Number(port),
  lifetimeCheckInterval: 1000,
  udpWindow: 100,
  logLevel: process.env.NODE_LOG || "FATAL",
  serverProtocol: "udp4",
  ipProtocol: "udp4",
  // node-coap throws (and the process dies) on a Content-Format it has no name for.
  formats: [
    { name: "lightweightm2m/text", value: 1541 },
    { name: "application/vnd.oma.lwm2m+tlv", value: 11542 },
    { name: "application/vnd.oma.lwm2m+json", value: 11543 },
    { name: "application/senml+json", value: 110 },
    { name: "application/senml+cbor", value: 112 },
  ],
  writeFormat: "text/plain",
  types: [],
  defaultType: "Device", // a Register without type= is refused without one
};
if (accept) {
  config.defaultAcceptFormat = accept;
}

function say(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

function deviceId(endpoint, callback) {
  lwm2m.server.getDevice(endpoint, (error, device) => callback(error, device && device.id));
}

lwm2m.server.start(config, (error, serverInfo) => {
  if (error) {
    say({ event: "error", error: String(error) });
    process.exit(1);
  }
  lwm2m.server.setHandler(serverInfo, "registration", (endpoint, lifetime, version, binding, payload, cb) => {
    say({ event: "registration", endpoint, lifetime, version, binding, payload });
    cb();
  });
  lwm2m.server.setHandler(serverInfo, "updateRegistration", (object, payload, cb) => {
    say({ event: "update", endpoint: object.name });
    cb();
  });
  lwm2m.server.setHandler(serverInfo, "unregistration", (device, cb) => {
    say({ event: "unregistration", endpoint: device.name });
    cb();
  });
  say({ event: "ready", port: config.port });
});

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, endpoint, ...path] = line.trim().split(/\s+/);
  if (command !== "read" || path.length !== 3) {
    say({ event: "error", error: "unknown command: " + line });
    return;
  }
  deviceId(endpoint, (error, id) => {
    if (error) {
      say({ event: "read", path: "/" + path.join("/"), error: error.name || String(error) });
      return;
    }
    lwm2m.server.read(id, path[0], path[1], path[2], (err, value) => {
      const result = { event: "read", endpoint, path: "/" + path.join("/") };
      if (err) {
        result.error = err.name || String(err);
        result.code = err.code;
      } else {
        result.value = value;
        result.hex = Buffer.from(value, "utf8").toString("hex");
      }
      say(result);
    });
  });
}).on("close", () => process.exit(0));
