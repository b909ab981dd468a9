// An lwm2m-node-lib (LwM2M 1.0) client: registers with the server given on the
// command line, serves /3/0/0, prints one line once registered, then stays up.
"use strict";
const lwm2m = require("lwm2m-node-lib");

const [host, port, endpoint] = process.argv.slice(2);
const config = {
  client: {
    lifetime: "300",
    version: "1.0",
    logLevel: "FATAL",
    observe: { period: 3000 },
    ipProtocol: "udp4",
    serverProtocol: "udp4",
  },
};

lwm2m.client.init(config);
lwm2m.client.registry.create("/3/0", (err) => {
  if (err) {
    console.log("ERROR create " + err);
    process.exit(1);
  }
  lwm2m.client.registry.setResource("/3/0", "0", "node-maker", () => {
    lwm2m.client.register(host, Number(port), null, endpoint, (err, info) => {
      if (err) {
        console.log("ERROR register " + err);
        process.exit(1);
      }
      console.log("REGISTERED " + info.location);
    });
  });
});
setTimeout(() => process.exit(0), 60000);
