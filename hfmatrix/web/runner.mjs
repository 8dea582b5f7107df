// The in-page half of the web backend: Python (Playwright) calls window.hfm.* through page.evaluate.
// Tensors cross the boundary as {type, dims, b64} (raw little-endian bytes, base64): exact for every
// dtype, int64 included (a BigInt64Array here), and cheap compared with JSON number lists.

// onnxruntime-web bundle per execution provider: the wasm-only build loads much faster than ort.all;
// webgpu needs the webgpu build; only ort.all carries WebNN.
const BUNDLES = { wasm: 'ort.wasm.min.mjs', webgpu: 'ort.webgpu.min.mjs', webnn: 'ort.all.min.mjs' };

const ARRAYS = {
  float32: Float32Array, float64: Float64Array, int64: BigInt64Array, uint64: BigUint64Array,
  int32: Int32Array, uint32: Uint32Array, int16: Int16Array, uint16: Uint16Array, float16: Uint16Array,
  int8: Int8Array, uint8: Uint8Array, bool: Uint8Array,
};

// Everything ORT prints (its verbose log carries the node placement) lands here as well as in the console.
const logs = [];
for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
  const original = console[level].bind(console);
  console[level] = (...args) => {
    logs.push({ level, text: args.map(String).join(' ') });
    original(...args);
  };
}

let ort = null;
const sessions = {};
let ep = null;

function fromB64(b64, type) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const Ctor = ARRAYS[type];
  if (!Ctor) throw new Error(`unsupported input dtype ${type}`);
  return new Ctor(bytes.buffer);
}

function toB64(view) {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

function errorText(e) {
  return e && e.name && e.message ? `${e.name}: ${e.message}` : String(e);
}

// GPUAdapterInfo is an interface object: copy the fields that say what the adapter is.
function adapterFields(info) {
  const out = {};
  for (const key of ['vendor', 'architecture', 'device', 'description', 'subgroupMinSize', 'subgroupMaxSize']) {
    if (info[key] !== undefined) out[key] = info[key];
  }
  out.isFallbackAdapter = Boolean(info.isFallbackAdapter);
  return out;
}

window.hfm = {
  browser() {
    return { userAgent: navigator.userAgent, crossOriginIsolated: self.crossOriginIsolated,
             isSecureContext: self.isSecureContext, hardwareConcurrency: navigator.hardwareConcurrency };
  },

  async load(provider) {
    const t0 = performance.now();
    const bundle = BUNDLES[provider];
    if (!bundle) throw new Error(`unknown execution provider ${provider}`);
    ort = await import(`/ort/${bundle}`);
    ort.env.logLevel = 'warning';  // a session's own logger (verbose when asked) carries its node placement
    ep = provider;
    return { bundle, ms: performance.now() - t0, ortVersion: ort.env.versions ? ort.env.versions.web : null };
  },

  // verbose: log every node's placement (session_state.cc); costs time on every later run, so the
  // backend creates a verbose session to read placement, releases it, then creates the timed one.
  async create(name, modelUrl, externalData, sessionOptions, verbose) {
    const first = logs.length;
    const t0 = performance.now();
    const options = { executionProviders: [ep], logSeverityLevel: verbose ? 0 : 2, logVerbosityLevel: 0,
                      ...sessionOptions };
    if (externalData && externalData.length) options.externalData = externalData;
    let session;
    try {
      session = await ort.InferenceSession.create(modelUrl, options);
    } catch (e) {
      return { error: errorText(e), ms: performance.now() - t0, log: logs.slice(first).map((l) => l.text) };
    }
    sessions[name] = session;
    const out = { ms: performance.now() - t0, inputNames: session.inputNames, outputNames: session.outputNames,
                  log: logs.slice(first).map((l) => l.text), numThreads: ort.env.wasm.numThreads ?? null };
    if (session.inputMetadata) {
      out.inputs = session.inputMetadata.map((m) => ({ name: m.name, type: m.type, shape: m.shape }));
    }
    if (ep === 'webgpu') {
      // the device ORT created: its adapter is the one that runs the model
      const device = await ort.env.webgpu.device;
      out.adapter = device && device.adapterInfo ? adapterFields(device.adapterInfo) : null;
    }
    // the wasm binary this page fetched says which ORT build runs
    out.wasm = performance.getEntriesByType('resource').map((r) => r.name).filter((n) => n.endsWith('.wasm'));
    return out;
  },

  async run(name, feeds) {
    const session = sessions[name];
    if (!session) throw new Error(`no session ${name}`);
    const tensors = {};
    for (const [key, t] of Object.entries(feeds)) {
      tensors[key] = new ort.Tensor(t.type, fromB64(t.b64, t.type), t.dims);
    }
    const first = logs.length;
    const t0 = performance.now();
    const results = await session.run(tensors);
    const ms = performance.now() - t0;
    const outputs = {};
    for (const [key, tensor] of Object.entries(results)) {
      const data = tensor.location === 'cpu' || tensor.location === undefined ? tensor.data : await tensor.getData(true);
      outputs[key] = { type: tensor.type, dims: Array.from(tensor.dims), b64: toB64(data) };
      if (tensor.dispose) tensor.dispose();
    }
    return { outputs, ms, warnings: logs.slice(first).filter((l) => l.level === 'warn' || l.level === 'error').map((l) => l.text) };
  },

  // A run Python can stop waiting for: start() returns at once (the run begins on the next task, so
  // even a run that blocks the page's thread cannot block this call), the page says 'hfm:answered' on
  // its console when the run settled, and take() hands over its result or throws its error. Python waits
  // for that message with its own deadline (a stuck run does not answer; the page is then closed).
  start(name, feeds) {
    window.hfm.answer = null;
    setTimeout(() => window.hfm.run(name, feeds)
      .then((result) => { window.hfm.answer = { result }; }, (error) => { window.hfm.answer = { error }; })
      .finally(() => console.debug('hfm:answered')), 0);
  },

  take() {
    const answer = window.hfm.answer;
    window.hfm.answer = null;
    if (answer.error) throw answer.error;
    return answer.result;
  },

  async release(name) {
    const session = sessions[name];
    delete sessions[name];
    if (session) await session.release();
  },
};
window.hfmReady = true;
