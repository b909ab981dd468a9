// Operations on a device through the API, their results shown as they go. The server queues a
// request for a sleeping client (202; queue mode, LwM2M-TS-Core 1.2 §6.5), or one a gateway holds
// for an end device until it next speaks (202 too), and its answer comes later as a REQUEST_DONE
// event.

import { api, devicePath } from "./api.js";
import { showInline, showResult } from "./results.js";
import { subscribe } from "./stream.js";
import { storeRecords } from "./values.js";

const pending = new Map(); // queued request id -> callback with the REQUEST_DONE event's data

subscribe(({ name, data }) => {
  if (name !== "REQUEST_DONE") return;
  const callback = pending.get(data.requestId);
  if (callback) {
    pending.delete(data.requestId);
    callback(data);
  }
});

// One device operation: {status, data}, waiting for a queued request to finish.
export async function deviceCall(ep, path, options, target) {
  const { status, data } = await api(devicePath(ep, path), options);
  if (status === 202 && data && data.requestId) {
    const note = `${path}: queued until the device hears it (request ${data.requestId})`;
    showResult(note, null, ep);
    if (target) showInline(target, note, null, ep);
    return new Promise((resolve) => {
      pending.set(data.requestId, (done) => resolve({ status: 200, data: done.result || done }));
    });
  }
  return { status, data };
}

// A device operation from a button: says it is under way, keeps the values it brings, shows
// its result at the top of the page and beside `target`.
export async function run(ep, title, path, options, target) {
  const head = `${title} ${path}`;
  showResult(`${head} …`, null, ep);
  if (target) showInline(target, `${head} …`, null, ep);
  const answer = await deviceCall(ep, path, options, target);
  const { data } = answer;
  if (data && data.records) storeRecords(ep, data.records, false);
  showResult(head, answer, ep);
  if (target) showInline(target, head, answer, ep);
  return answer;
}
