// The site's search from a folder opened in a browser (file://), without a server.
//
// The Material theme searches in a Web Worker. A page opened from file:// has an opaque origin,
// and Chromium refuses to start a worker from it ("SecurityError: Failed to construct 'Worker'"),
// so the search box stayed at "Initializing search". On file:// only, this stands in for Worker:
// the worker's script runs in a hidden iframe of the page, and messages pass both ways as they
// would with a worker (asynchronously, as structured clones). The theme loads the search index
// from search/search_index.js on file:// (docs/_ext/file_search.py writes it). Served over http,
// nothing here runs.
(function () {
  "use strict";
  if (location.protocol !== "file:") {
    return;
  }
  class FileWorker extends EventTarget {
    constructor(url) {
      super();
      this.onmessage = null;
      this.onerror = null;
      const frame = document.createElement("iframe");
      frame.hidden = true;
      frame.setAttribute("aria-hidden", "true");
      document.documentElement.appendChild(frame);
      const scope = frame.contentWindow;
      this._scope = scope;
      this._queue = [];
      this._ready = false;
      // What the worker's script calls: postMessage answers the page.
      scope.postMessage = (data) => {
        const copy = structuredClone(data);
        setTimeout(() => this._deliver(new MessageEvent("message", { data: copy })));
      };
      scope.importScripts = () => {
        throw new Error("importScripts is not available to a worker run from file://");
      };
      const script = scope.document.createElement("script");
      script.src = new URL(url, location.href).href;
      script.onload = () => {
        this._ready = true;
        for (const data of this._queue.splice(0)) {
          this._post(data);
        }
      };
      script.onerror = () => {
        this._deliver(new ErrorEvent("error", { message: `cannot load the worker ${url}` }));
      };
      scope.document.head.appendChild(script);
    }

    _deliver(event) {
      const handler = event.type === "message" ? this.onmessage : this.onerror;
      if (typeof handler === "function") {
        handler.call(this, event);
      }
      this.dispatchEvent(event);
    }

    _post(data) {
      const copy = structuredClone(data);
      const scope = this._scope;
      setTimeout(() => scope.dispatchEvent(new scope.MessageEvent("message", { data: copy })));
    }

    postMessage(data) {
      if (this._ready) {
        this._post(data);
      } else {
        this._queue.push(data);
      }
    }

    terminate() {
      const frame = this._scope.frameElement;
      if (frame) {
        frame.remove();
      }
    }
  }
  window.Worker = FileWorker;
})();
