// The lwm2m web console: native ES modules over the REST + SSE API (/api/...), loaded by
// index.html with no build step. Nothing is fetched from outside the server, so the console
// works offline. This module opens the event stream and routes the pages; the shared parts
// are in lib/, one module per page in pages/.

import { startRouter } from "./lib/router.js";
import { streamEvents } from "./lib/stream.js";
import { renderBootstrap } from "./pages/bootstrap.js";
import { renderCampaign, renderCampaigns } from "./pages/campaigns.js";
import { renderDevice } from "./pages/device.js";
import { renderEvents } from "./pages/events.js";
import { renderFirmware } from "./pages/firmware.js";
import { renderFleet } from "./pages/fleet.js";
import { renderMap } from "./pages/map.js";
import { renderSecurity } from "./pages/security.js";

// The pages by the name the router gives them (lib/router.js pageOf); each returns the
// function that leaves it.
const PAGES = {
  fleet: renderFleet,
  device: (ep) => renderDevice(decodeURIComponent(ep)),
  map: renderMap,
  events: renderEvents,
  bootstrap: renderBootstrap,
  security: renderSecurity,
  firmware: renderFirmware,
  campaigns: renderCampaigns,
  campaign: (id) => renderCampaign(decodeURIComponent(id)),
};

streamEvents();
startRouter(PAGES);
