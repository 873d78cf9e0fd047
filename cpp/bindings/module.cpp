// pybind11 only: type conversion, GIL release, exception translation. No logic lives here.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "mr/chat.hpp"
#include "mr/embedder.hpp"
#include "mr/engine.hpp"
#include "mr/errors.hpp"
#include "mr/kernels.hpp"
#include "mr/log.hpp"
#include "mr/model.hpp"
#include "mr/text.hpp"
#include "mr/rpc.hpp"
#include "mr/sampler.hpp"

namespace py = pybind11;
using namespace pybind11::literals;
using release_gil = py::call_guard<py::gil_scoped_release>;

namespace {

// Raise mr.errors.<name>(message) with extra attributes set on the instance.
void raise_mr(const char* name, const std::string& message, py::dict attrs = {}) {
    py::object cls = py::module_::import("mr.errors").attr(name);
    py::object exc = cls(message);
    for (auto item : attrs) py::setattr(exc, item.first, item.second);
    PyErr_SetObject(cls.ptr(), exc.ptr());
}

void translate(std::exception_ptr p) {
    try {
        if (p) std::rethrow_exception(p);
    } catch (const mr::ContextOverflow& e) {
        raise_mr("ContextLengthError", e.what(), py::dict("n_requested"_a = e.n_requested, "n_ctx"_a = e.n_ctx));
    } catch (const mr::InvalidArgument& e) {
        raise_mr("InvalidArgumentError", e.what());
    } catch (const mr::ModelLoadError& e) {
        raise_mr("ModelLoadError", e.what());
    } catch (const mr::Overloaded& e) {
        raise_mr("OverloadedError", e.what());
    } catch (const mr::TemplateError& e) {
        raise_mr("TemplateError", e.what());
    } catch (const mr::Cancelled& e) {
        raise_mr("CutShortError", e.what());
    } catch (const mr::Error& e) {
        raise_mr("EngineError", e.what());
    }
}

py::array_t<int32_t> to_array(const std::vector<llama_token>& tokens) {
    return py::array_t<int32_t>(static_cast<py::ssize_t>(tokens.size()), tokens.data());
}

std::vector<llama_token> to_tokens(const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& a) {
    if (a.ndim() != 1) throw mr::InvalidArgument("token ids must be a 1-D sequence");
    return std::vector<llama_token>(a.data(), a.data() + a.size());
}

// Hands the vector's buffer to numpy without copying; the capsule frees it with the array.
py::array_t<float> to_matrix(std::vector<float>&& data, py::ssize_t rows, py::ssize_t cols) {
    auto* owned = new std::vector<float>(std::move(data));
    py::capsule free_when_done(owned, [](void* v) { delete static_cast<std::vector<float>*>(v); });
    return py::array_t<float>({rows, cols}, owned->data(), free_when_done);
}

py::array_t<float> to_matrix(mr::Embeddings&& e) {
    return to_matrix(std::move(e.data), e.n_rows, e.n_embd);
}

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

py::array_t<float> cpu_mul_mat(int type, const py::bytes& weights, int64_t rows, const FloatArray& x, int threads,
                               bool reference) {
    if (x.ndim() != 2) throw mr::InvalidArgument("x must be a 2-D float32 array (n, k)");
    const std::string_view w(weights);
    const int64_t n = x.shape(0), k = x.shape(1);
    std::vector<float> out;
    {
        py::gil_scoped_release released;
        out = mr::cpu_mul_mat(type, w.data(), w.size(), rows, k, x.data(), n, threads, reference);
    }
    return to_matrix(std::move(out), n, rows);
}

py::array_t<float> cpu_flash_attn(const FloatArray& q, const FloatArray& k, const FloatArray& v, const FloatArray& mask,
                                  int threads, bool reference) {
    if (q.ndim() != 3 || k.ndim() != 3 || v.ndim() != 3 || mask.ndim() != 2) {
        throw mr::InvalidArgument("q, k and v must be 3-D (heads, rows, d) and mask 2-D (n_q, n_kv)");
    }
    const int64_t n_head = q.shape(0), n_q = q.shape(1), d = q.shape(2), n_head_kv = k.shape(0), n_kv = k.shape(1);
    for (const FloatArray* a : {&k, &v}) {
        if (a->shape(0) != n_head_kv || a->shape(1) != n_kv || a->shape(2) != d) {
            throw mr::InvalidArgument("k and v must both be (n_head_kv, n_kv, d) with q's d");
        }
    }
    if (mask.shape(0) != n_q || mask.shape(1) != n_kv) throw mr::InvalidArgument("mask must be (n_q, n_kv)");
    std::vector<float> out;
    {
        py::gil_scoped_release released;
        out = mr::cpu_flash_attn(q.data(), k.data(), v.data(), mask.data(), d, n_q, n_head, n_kv, n_head_kv, threads,
                                 reference);
    }
    return py::array_t<float>(to_matrix(std::move(out), n_q, n_head * d).reshape({n_q, n_head, d}));
}

py::bytes cpu_quantize(int type, const FloatArray& x) {
    if (x.ndim() != 2) throw mr::InvalidArgument("x must be a 2-D float32 array (rows, k)");
    const std::vector<uint8_t> out = mr::cpu_quantize(type, x.data(), x.shape(0), x.shape(1));
    return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
}

int32_t first_argmax(const FloatArray& values) {
    if (values.ndim() != 1 || values.size() == 0) throw mr::InvalidArgument("values must be a non-empty 1-D array");
    if (values.size() > INT32_MAX) throw mr::InvalidArgument("values has more than 2^31 - 1 entries");
    return mr::first_argmax(values.data(), static_cast<int32_t>(values.size()));
}

// (id, token, text, frame, finish, logprob, end): `frame` is None unless the request has a
// FrameFormat; `logprob` is (logprob, top, piece) when asked for; `end` is set on a finish:
// (n_prompt, n_generated, n_cached, error, queue_ms, prefill_ms, decode_ms, stop_index, wire, spec), `wire`
// being (send times, logged payload, payload bytes) for a request with a wire, else None, and `spec`
// (drafted, accepted, prediction accepted, prediction rejected) the request's speculation counts.
py::list to_py(std::vector<mr::Event>&& events) {
    py::list out(events.size());
    for (size_t i = 0; i < events.size(); ++i) {
        auto& ev = events[i];
        py::object frame = ev.frame.empty() ? py::none() : py::object(py::bytes(ev.frame));
        py::object logprob = py::none();
        if (ev.has_logprob) {
            py::object top = ev.top.empty() ? py::none() : py::object(py::cast(ev.top));
            logprob = py::make_tuple(ev.logprob, top, py::bytes(ev.piece));
        }
        py::object end = py::none();
        if (ev.finish != mr::Finish::None) {
            py::object wire = py::none();
            if (ev.has_wire) wire = py::make_tuple(py::cast(ev.wire_times), py::bytes(ev.wire_log), ev.wire_bytes);
            const mr::SpecCounts& c = ev.spec;
            end = py::make_tuple(ev.n_prompt, ev.n_generated, ev.n_cached, ev.error, ev.queue_ms, ev.prefill_ms,
                                 ev.decode_ms, ev.stop_index, wire,
                                 py::make_tuple(c.drafted, c.accepted, c.prediction_accepted, c.prediction_rejected));
        }
        out[i] = py::make_tuple(ev.id, ev.token, py::str(ev.text), frame, static_cast<int>(ev.finish), logprob, end);
    }
    return out;
}

// (endpoint, device name, free bytes, total bytes) per worker device.
py::list to_py(const std::vector<mr::rpc::WorkerDevice>& devices) {
    py::list out;
    for (const auto& d : devices) out.append(py::make_tuple(d.endpoint, d.name, d.free, d.total));
    return out;
}

// (device, host, layers, output) per device holding layers.
py::list to_py(const std::vector<mr::Placement>& placement) {
    py::list out;
    for (const auto& p : placement) out.append(py::make_tuple(p.device, p.host, p.layers, p.output));
    return out;
}

// Runs `free` without the GIL when this thread holds it. Freeing a native object can wait on
// native threads (an engine's, an RPC connection's) that may be waiting for the GIL themselves,
// to hand a log line to Python: with the GIL held here, both would wait forever.
template <class F>
void without_gil(F&& free) {
    if (PyGILState_Check()) {
        py::gil_scoped_release nogil;
        free();
    } else {
        free();
    }
}

struct FreeWithoutGil {
    template <class T>
    void operator()(T* p) const {
        without_gil([p] { delete p; });
    }
};

template <class T>
using Owned = std::unique_ptr<T, FreeWithoutGil>;

// The model as Python holds it: the last reference, wherever it goes, is dropped without the GIL.
std::shared_ptr<mr::Model> held(std::shared_ptr<mr::Model> model) {
    mr::Model* raw = model.get();
    return std::shared_ptr<mr::Model>(raw, [model](mr::Model*) mutable { without_gil([&model] { model.reset(); }); });
}

void set_log_handler(py::function handler, int min_level) {
    auto shared = std::make_shared<py::function>(std::move(handler));
    mr::log::set_sink(
        [shared](int level, const std::string& message) {
            if (!Py_IsInitialized()) return;
            py::gil_scoped_acquire gil;
            try {
                (*shared)(level, message);
            } catch (py::error_already_set& e) {
                e.discard_as_unraisable("mr log handler");
            }
        },
        min_level);
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "mr's native core: llama.cpp behind a small C++ API";
    py::register_exception_translator(translate);
    mr::log::install();

    m.def("llama_commit", [] { return std::string(MR_LLAMA_COMMIT); });
    m.def("system_info", &mr::system_info);
    m.def("default_threads", &mr::default_threads);
    m.def("cpu_mul_mat", &cpu_mul_mat, "type"_a, "weights"_a, "rows"_a, "x"_a, "threads"_a = 1,
          "reference"_a = false);
    m.def("cpu_quantize", &cpu_quantize, "type"_a, "x"_a);
    m.def("first_argmax", &first_argmax, "values"_a);
    m.def("cpu_flash_attn", &cpu_flash_attn, "q"_a, "k"_a, "v"_a, "mask"_a, "threads"_a = 1,
          "reference"_a = false);
    m.def("set_log_handler", &set_log_handler, "handler"_a, "min_level"_a);
    m.def("set_log_level", &mr::log::set_level, "min_level"_a);
    m.def("clear_log_handler", &mr::log::clear_sink, release_gil());

    py::class_<mr::TextAssembler>(m, "TextAssembler")
        .def(py::init<std::vector<std::string>>(), "stops"_a = std::vector<std::string>{})
        .def("feed", [](mr::TextAssembler& self, const py::bytes& piece) { return self.feed(std::string_view(piece)); },
             "piece"_a)
        .def("flush", &mr::TextAssembler::flush, "cut"_a = false)
        .def_property_readonly("stopped", &mr::TextAssembler::stopped)
        .def_property_readonly("matched", &mr::TextAssembler::matched);
    m.def("render_frame",
          [](const py::bytes& head, const py::bytes& tail, bool chunked, const std::string& text) {
              return py::bytes(mr::FrameFormat{std::string(head), std::string(tail), chunked}.render(text));
          },
          "head"_a, "tail"_a, "chunked"_a, "text"_a);
    m.def(
        "probe_workers",
        [](const std::vector<std::string>& endpoints) {
            std::vector<mr::rpc::WorkerDevice> devices;
            {
                py::gil_scoped_release nogil;
                devices = mr::rpc::Workers(endpoints).devices();
            }
            return to_py(devices);
        },
        "endpoints"_a);
    m.def(
        "serve_worker",
        [](const std::string& host, int port, int n_threads, size_t mem_limit, int idle_timeout_ms,
           mr::rpc::ClientLog on_client) {
            mr::rpc::serve({host, port, n_threads, mem_limit, idle_timeout_ms}, std::move(on_client));
        },
        "host"_a, "port"_a, "n_threads"_a, "mem_limit"_a, "idle_timeout_ms"_a, "on_client"_a, release_gil());

    py::class_<mr::Model, std::shared_ptr<mr::Model>>(m, "Model")
        .def(py::init([](const std::string& path, int n_gpu_layers, bool use_mmap, bool repack,
                         const std::vector<std::string>& rpc_workers) {
                 return held(mr::Model::load({path, n_gpu_layers, use_mmap, repack, rpc_workers}));
             }),
             "path"_a, "n_gpu_layers"_a = -1, "use_mmap"_a = true, "repack"_a = true,
             "rpc_workers"_a = std::vector<std::string>{}, release_gil())
        .def_property_readonly("placement", [](const mr::Model& self) { return to_py(self.placement()); })
        .def_property_readonly("workers", [](const mr::Model& self) { return to_py(self.workers()); })
        .def_property_readonly("lost_worker", &mr::Model::lost_worker)
        .def_property_readonly("weight_buffers",
                               [](const mr::Model& self) {
                                   py::dict out;
                                   for (const auto& b : self.weight_buffers()) out[py::str(b.name)] = b.mib;
                                   return out;
                               })
        .def_property_readonly("path", &mr::Model::path)
        .def_property_readonly("metadata", &mr::Model::metadata)
        .def_property_readonly("description", &mr::Model::description)
        .def_property_readonly("architecture", &mr::Model::architecture)
        .def_property_readonly("chat_template", &mr::Model::chat_template)
        .def_property_readonly("n_ctx_train", &mr::Model::n_ctx_train)
        .def_property_readonly("n_embd", &mr::Model::n_embd)
        .def_property_readonly("n_layer", &mr::Model::n_layer)
        .def_property_readonly("n_params", &mr::Model::n_params)
        .def_property_readonly("size_bytes", &mr::Model::size_bytes)
        .def_property_readonly("n_vocab", &mr::Model::n_vocab)
        .def_property_readonly("bos", &mr::Model::bos)
        .def_property_readonly("eos", &mr::Model::eos)
        .def_property_readonly("eot", &mr::Model::eot)
        .def_property_readonly("eog_tokens", [](const mr::Model& self) { return to_array(self.eog_tokens()); })
        .def("is_eog", &mr::Model::is_eog, "token"_a)
        .def("tokenize",
             [](const mr::Model& self, const std::string& text, bool add_special, bool parse_special) {
                 std::vector<llama_token> tokens;
                 {
                     py::gil_scoped_release nogil;
                     tokens = self.tokenize(text, add_special, parse_special);
                 }
                 return to_array(tokens);
             },
             "text"_a, "add_special"_a = true, "parse_special"_a = false)
        .def("detokenize",
             [](const mr::Model& self, const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& ids,
                bool remove_special, bool unparse_special) {
                 auto tokens = to_tokens(ids);
                 std::string text;
                 {
                     py::gil_scoped_release nogil;
                     text = self.detokenize(tokens, remove_special, unparse_special);
                 }
                 return py::bytes(text);
             },
             "tokens"_a, "remove_special"_a = false, "unparse_special"_a = false)
        .def("token_to_piece",
             [](const mr::Model& self, int32_t token, bool special) { return py::bytes(self.token_to_piece(token, special)); },
             "token"_a, "special"_a = false);

    py::class_<mr::SamplingParams>(m, "SamplingParams")
        .def(py::init<>())
        .def_readwrite("temperature", &mr::SamplingParams::temperature)
        .def_readwrite("top_k", &mr::SamplingParams::top_k)
        .def_readwrite("top_p", &mr::SamplingParams::top_p)
        .def_readwrite("min_p", &mr::SamplingParams::min_p)
        .def_readwrite("seed", &mr::SamplingParams::seed)
        .def_readwrite("repeat_penalty", &mr::SamplingParams::repeat_penalty)
        .def_readwrite("presence_penalty", &mr::SamplingParams::presence_penalty)
        .def_readwrite("frequency_penalty", &mr::SamplingParams::frequency_penalty)
        .def_readwrite("penalty_last_n", &mr::SamplingParams::penalty_last_n)
        .def_readwrite("logit_bias", &mr::SamplingParams::logit_bias)
        .def_readwrite("grammar", &mr::SamplingParams::grammar)
        .def_readwrite("grammar_lazy", &mr::SamplingParams::grammar_lazy)
        .def_readwrite("trigger_patterns", &mr::SamplingParams::trigger_patterns)
        .def_readwrite("trigger_tokens", &mr::SamplingParams::trigger_tokens)
        .def_readwrite("grammar_prefill", &mr::SamplingParams::grammar_prefill)
        .def_readwrite("reasoning_budget", &mr::SamplingParams::reasoning_budget)
        .def_readwrite("reasoning_start", &mr::SamplingParams::reasoning_start)
        .def_readwrite("reasoning_end", &mr::SamplingParams::reasoning_end)
        .def_readwrite("reasoning_prefill", &mr::SamplingParams::reasoning_prefill);

    py::class_<mr::Engine, Owned<mr::Engine>>(m, "Engine")
        .def(py::init([](std::shared_ptr<mr::Model> model, int n_ctx, int n_slots, int n_batch, int n_ubatch,
                         int n_threads, int max_queue, int prefill_chunk, int flash_attn, float idle_cache,
                         bool per_slot_kv, bool deterministic, int spec, int spec_max,
                         std::shared_ptr<mr::Model> draft) {
                 if (spec < 0 || spec > 2) throw mr::InvalidArgument("spec must be 0 (off), 1 (auto) or 2 (ngram)");
                 mr::EngineParams p;
                 p.n_ctx = n_ctx;
                 p.n_slots = n_slots;
                 p.n_batch = n_batch;
                 p.n_ubatch = n_ubatch;
                 p.n_threads = n_threads;
                 p.n_threads_batch = n_threads;
                 p.max_queue = max_queue;
                 p.prefill_chunk = prefill_chunk;
                 p.flash_attn = flash_attn;
                 p.idle_cache = idle_cache;
                 p.per_slot_kv = per_slot_kv;
                 p.deterministic = deterministic;
                 p.spec = static_cast<mr::EngineParams::Spec>(spec);
                 p.spec_max = spec_max;
                 return Owned<mr::Engine>(new mr::Engine(std::move(model), p, std::move(draft)));
             }),
             "model"_a, "n_ctx"_a = 4096, "n_slots"_a = 4, "n_batch"_a = 512, "n_ubatch"_a = 512,
             "n_threads"_a = 0, "max_queue"_a = 64, "prefill_chunk"_a = 0, "flash_attn"_a = -1, "idle_cache"_a = 0.0f,
             "per_slot_kv"_a = false, "deterministic"_a = false, "spec"_a = 1, "spec_max"_a = 64,
             "draft"_a = std::shared_ptr<mr::Model>(), release_gil())
        .def("submit",
             [](mr::Engine& self, const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& prompt,
                const mr::SamplingParams& sampling, int max_tokens, bool ignore_eos,
                const std::vector<int32_t>& stop_tokens, int n_logprobs, std::vector<std::string> stop_strings,
                const py::bytes& frame_head, const py::bytes& frame_tail, bool frame_chunked, int wire_fd,
                size_t wire_log, const py::array_t<int32_t, py::array::c_style | py::array::forcecast>& prediction) {
                 mr::Request r;
                 r.prediction = to_tokens(prediction);
                 r.n_logprobs = n_logprobs;
                 r.stop_strings = std::move(stop_strings);
                 r.frame = mr::FrameFormat{std::string(frame_head), std::string(frame_tail), frame_chunked};
                 r.prompt = to_tokens(prompt);
                 r.sampling = sampling;
                 r.max_tokens = max_tokens;
                 r.ignore_eos = ignore_eos;
                 r.stop_tokens = stop_tokens;
                 r.wire_fd = wire_fd;
                 r.wire_log = wire_log;
                 py::gil_scoped_release nogil;
                 return self.submit(std::move(r));
             },
             "prompt"_a, "sampling"_a, "max_tokens"_a = -1, "ignore_eos"_a = false,
             "stop_tokens"_a = std::vector<int32_t>{}, "n_logprobs"_a = -1,
             "stop_strings"_a = std::vector<std::string>{}, "frame_head"_a = py::bytes(), "frame_tail"_a = py::bytes(),
             "frame_chunked"_a = false, "wire_fd"_a = -1, "wire_log"_a = 0,
             "prediction"_a = py::array_t<int32_t>(0))
        .def("cancel", &mr::Engine::cancel, "id"_a, release_gil())
        .def("decide_wire", &mr::Engine::decide_wire, "id"_a, "open"_a, release_gil())
        .def_property_readonly_static("REST_OF_FRAME", [](const py::object&) { return mr::Engine::kRestOfFrame; })
        .def("poll",
             [](mr::Engine& self, int timeout_ms) {
                 std::vector<mr::Event> events;
                 {
                     py::gil_scoped_release nogil;
                     events = self.poll(timeout_ms);
                 }
                 return to_py(std::move(events));
             },
             "timeout_ms"_a = 0)
        .def_property_readonly("event_fd", &mr::Engine::event_fd)
        .def_property_readonly("n_ctx", &mr::Engine::n_ctx_seq)
        .def_property_readonly("n_slots", [](const mr::Engine& self) { return self.params().n_slots; })
        .def_property_readonly("flash_attn", &mr::Engine::flash_attn)
        .def_property_readonly("deterministic", &mr::Engine::deterministic)
        .def("stats",
             [](const mr::Engine& self) {
                 mr::EngineStats s;
                 {
                     py::gil_scoped_release nogil;  // stats() takes the engine mutex: never under the GIL
                     s = self.stats();
                 }
                 return py::dict("n_slots"_a = s.n_slots, "busy_slots"_a = s.busy_slots, "queued"_a = s.queued,
                                 "steps"_a = s.steps, "tokens_prompt"_a = s.tokens_prompt,
                                 "tokens_generated"_a = s.tokens_generated,
                                 "requests_finished"_a = s.requests_finished, "prefix_hits"_a = s.prefix_hits,
                                 "tokens_reused"_a = s.tokens_reused, "spec_drafted"_a = s.spec_drafted,
                                 "spec_accepted"_a = s.spec_accepted, "us_batch"_a = s.us_batch,
                                 "us_decode"_a = s.us_decode, "us_sample"_a = s.us_sample,
                                 "us_publish"_a = s.us_publish, "us_other"_a = s.us_other);
             })
        .def("slot_requests", &mr::Engine::slot_requests)
        .def("shutdown", &mr::Engine::shutdown, release_gil());

    py::class_<mr::Embedder, Owned<mr::Embedder>>(m, "Embedder")
        .def(py::init([](std::shared_ptr<mr::Model> model, int n_ctx, int n_seq_max, int n_threads, bool rank) {
                 return Owned<mr::Embedder>(
                     new mr::Embedder(std::move(model), mr::EmbedderParams{n_ctx, n_seq_max, n_threads, rank}));
             }),
             "model"_a, "n_ctx"_a = 2048, "n_seq_max"_a = 32, "n_threads"_a = 0, "rank"_a = false, release_gil())
        .def("embed",
             [](mr::Embedder& self, const std::vector<std::string>& texts, bool normalize, bool truncate) {
                 mr::Embeddings e;
                 {
                     py::gil_scoped_release nogil;
                     e = self.embed(texts, normalize, truncate);
                 }
                 const int n_tokens = e.n_tokens;
                 return py::make_tuple(to_matrix(std::move(e)), n_tokens);
             },
             "texts"_a, "normalize"_a = true, "truncate"_a = false)
        .def("rerank",
             [](mr::Embedder& self, const std::string& query, const std::vector<std::string>& documents, bool truncate) {
                 mr::Embeddings e;
                 {
                     py::gil_scoped_release nogil;
                     e = self.rerank(query, documents, truncate);
                 }
                 const int n_tokens = e.n_tokens, n_batches = e.n_batches;
                 return py::make_tuple(to_matrix(std::move(e)), n_tokens, n_batches);
             },
             "query"_a, "documents"_a, "truncate"_a = false)
        .def_property_readonly("rank", &mr::Embedder::rank)
        .def("embed_tokens",
             [](mr::Embedder& self, std::vector<std::vector<int32_t>> inputs, bool normalize, bool truncate) {
                 mr::Embeddings e;
                 {
                     py::gil_scoped_release nogil;
                     e = self.embed_tokens(std::move(inputs), normalize, truncate);
                 }
                 const int n_tokens = e.n_tokens;
                 return py::make_tuple(to_matrix(std::move(e)), n_tokens);
             },
             "inputs"_a, "normalize"_a = true, "truncate"_a = false)
        .def("cancel", &mr::Embedder::cancel, "why"_a, release_gil())
        .def_property_readonly("pooling_type", &mr::Embedder::pooling_type)
        .def_property_readonly("n_ctx", &mr::Embedder::n_ctx);

    py::class_<mr::ChatParser, std::shared_ptr<mr::ChatParser>>(m, "ChatParser")
        .def("parse", &mr::ChatParser::parse, "text"_a, "partial"_a, release_gil());

    py::class_<mr::ChatPrompt>(m, "ChatPrompt")
        .def_readonly("prompt", &mr::ChatPrompt::prompt)
        .def_readonly("additional_stops", &mr::ChatPrompt::additional_stops)
        .def_readonly("grammar", &mr::ChatPrompt::grammar)
        .def_readonly("grammar_lazy", &mr::ChatPrompt::grammar_lazy)
        .def_readonly("trigger_patterns", &mr::ChatPrompt::trigger_patterns)
        .def_readonly("trigger_tokens", &mr::ChatPrompt::trigger_tokens)
        .def_readonly("generation_prompt", &mr::ChatPrompt::generation_prompt)
        .def_readonly("format", &mr::ChatPrompt::format)
        .def_readonly("supports_thinking", &mr::ChatPrompt::supports_thinking)
        .def_readonly("thinking_start_tag", &mr::ChatPrompt::thinking_start_tag)
        .def_readonly("thinking_end_tags", &mr::ChatPrompt::thinking_end_tags)
        .def_readonly("parser", &mr::ChatPrompt::parser);

    py::class_<mr::ChatTemplates>(m, "ChatTemplates")
        .def(py::init<const mr::Model&, const std::string&>(), "model"_a, "override_template"_a = "", release_gil())
        .def_property_readonly("source", &mr::ChatTemplates::source)
        .def_property_readonly("caps", &mr::ChatTemplates::caps)
        .def("apply",
             [](const mr::ChatTemplates& self, const std::string& messages_json, const std::string& tools_json,
                const std::string& tool_choice, bool parallel_tool_calls, const std::string& json_schema,
                bool add_generation_prompt, bool enable_thinking, const std::string& template_kwargs_json) {
                 mr::ChatInput in{messages_json, tools_json,        tool_choice,    parallel_tool_calls,
                                  json_schema,   add_generation_prompt, enable_thinking};
                 in.template_kwargs_json = template_kwargs_json;
                 py::gil_scoped_release nogil;
                 return self.apply(in);
             },
             "messages_json"_a, "tools_json"_a = "", "tool_choice"_a = "auto", "parallel_tool_calls"_a = false,
             "json_schema"_a = "", "add_generation_prompt"_a = true, "enable_thinking"_a = true,
             "template_kwargs_json"_a = "");

    m.def("json_schema_to_grammar", &mr::json_schema_to_grammar, "schema_json"_a, release_gil());
}
