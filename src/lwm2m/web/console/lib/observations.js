// The observations this console started ("ep|path"), so that the device page shows them as on
// while they last, page after page.

import { subscribe } from "./stream.js";

const observing = new Set();

export const isObserved = (ep, path) => observing.has(`${ep}|${path}`);
export const observed = (ep, path) => observing.add(`${ep}|${path}`);
export const unobserved = (ep, path) => observing.delete(`${ep}|${path}`);

// The paths of `ep` under observation.
export function observedPaths(ep) {
  return [...observing].filter((key) => key.startsWith(`${ep}|`)).map((key) => key.slice(ep.length + 1));
}

// An OBSERVATION_ENDED event names the device and a token, not the path: forget all of the
// device's observations rather than show one as on that is not.
subscribe(({ name, data }) => {
  if (name !== "OBSERVATION_ENDED") return;
  for (const key of [...observing]) if (key.startsWith(`${data.endpoint}|`)) observing.delete(key);
});
