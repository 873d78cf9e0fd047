// The generation engine's types: its parameters, a request, the events it publishes.
#include <pybind11/native_enum.h>
#include <pybind11/stl.h>

#include "bindings.hpp"

#include "mr/engine.hpp"
#include "mr/model.hpp"
#include "mr/sampler.hpp"

namespace mr::bind {
namespace {

using namespace pybind11::literals;

py::object bytes_or_none(const std::string& s) { return s.empty() ? py::none() : py::object(py::bytes(s)); }

// Every pending event, each moved into a Python-owned Event (no copy of its text or frame).
py::list poll(Engine& self, int timeout_ms) {
    std::vector<Event> events;
    {
        py::gil_scoped_release nogil;
        events = self.poll(timeout_ms);
    }
    py::list out(events.size());
    for (size_t i = 0; i < events.size(); ++i) out[i] = py::cast(std::move(events[i]));
    return out;
}

py::dict stats(const Engine& self) {
    EngineStats s;
    {
        py::gil_scoped_release nogil;  // stats() takes the engine mutex: never under the GIL
        s = self.stats();
    }
    return py::dict("n_slots"_a = s.n_slots, "busy_slots"_a = s.busy_slots, "queued"_a = s.queued,
                    "steps"_a = s.steps, "tokens_prompt"_a = s.tokens_prompt,
                    "tokens_generated"_a = s.tokens_generated, "requests_finished"_a = s.requests_finished,
                    "prefix_hits"_a = s.prefix_hits, "tokens_reused"_a = s.tokens_reused,
                    "spec_drafted"_a = s.spec_drafted, "spec_accepted"_a = s.spec_accepted,
                    "spec_copy_rate"_a = s.spec_copy_rate, "spec_recall_rate"_a = s.spec_recall_rate,
                    "spec_checked"_a = s.spec_checked,
                    "media_encoded"_a = s.media_encoded, "kv_span"_a = s.kv_span,
                    "us_batch"_a = s.us_batch, "us_decode"_a = s.us_decode, "us_sample"_a = s.us_sample,
                    "us_publish"_a = s.us_publish, "us_other"_a = s.us_other);
}

void bind_sampling(py::module_& m) {
    py::class_<SamplingParams>(m, "SamplingParams")
        .def(py::init(&from_kwargs<SamplingParams>))
        .def_readwrite("temperature", &SamplingParams::temperature)
        .def_readwrite("top_k", &SamplingParams::top_k)
        .def_readwrite("top_p", &SamplingParams::top_p)
        .def_readwrite("min_p", &SamplingParams::min_p)
        .def_readwrite("seed", &SamplingParams::seed)
        .def_readwrite("repeat_penalty", &SamplingParams::repeat_penalty)
        .def_readwrite("presence_penalty", &SamplingParams::presence_penalty)
        .def_readwrite("frequency_penalty", &SamplingParams::frequency_penalty)
        .def_readwrite("penalty_last_n", &SamplingParams::penalty_last_n)
        .def_readwrite("logit_bias", &SamplingParams::logit_bias)
        .def_readwrite("grammar", &SamplingParams::grammar)
        .def_readwrite("grammar_lazy", &SamplingParams::grammar_lazy)
        .def_readwrite("trigger_patterns", &SamplingParams::trigger_patterns)
        .def_readwrite("trigger_tokens", &SamplingParams::trigger_tokens)
        .def_readwrite("grammar_prefill", &SamplingParams::grammar_prefill)
        .def_readwrite("reasoning_budget", &SamplingParams::reasoning_budget)
        .def_readwrite("reasoning_start", &SamplingParams::reasoning_start)
        .def_readwrite("reasoning_end", &SamplingParams::reasoning_end)
        .def_readwrite("reasoning_prefill", &SamplingParams::reasoning_prefill);
}

void bind_params(py::module_& m) {
    using P = EngineParams;
    py::native_enum<P::Spec>(m, "Spec", "enum.Enum")
        .value("OFF", P::Spec::Off)
        .value("AUTO", P::Spec::Auto)
        .value("NGRAM", P::Spec::Ngram)
        .finalize();
    py::class_<P>(m, "EngineParams")
        .def(py::init(&from_kwargs<P>))
        .def_readwrite("n_ctx", &P::n_ctx)
        .def_readwrite("n_slots", &P::n_slots)
        .def_readwrite("n_batch", &P::n_batch)
        .def_readwrite("n_ubatch", &P::n_ubatch)
        .def_readwrite("n_threads", &P::n_threads)
        .def_readwrite("n_threads_batch", &P::n_threads_batch)
        .def_readwrite("max_queue", &P::max_queue)
        .def_readwrite("prefill_chunk", &P::prefill_chunk)
        .def_readwrite("flash_attn", &P::flash_attn)
        .def_readwrite("idle_cache", &P::idle_cache)
        .def_readwrite("per_slot_kv", &P::per_slot_kv)
        .def_readwrite("deterministic", &P::deterministic)
        .def_readwrite("spec", &P::spec)
        .def_readwrite("spec_max", &P::spec_max);
}

void bind_request(py::module_& m) {
    py::class_<Request>(m, "Request")
        .def(py::init(&from_kwargs<Request>))
        .def_property(
            "prompt", [](const Request& r) { return to_array(r.prompt); },
            [](Request& r, const TokenArray& a) { r.prompt = to_tokens(a); })
        .def_readwrite("sampling", &Request::sampling)
        .def_readwrite("max_tokens", &Request::max_tokens)
        .def_readwrite("ignore_eos", &Request::ignore_eos)
        .def_readwrite("stop_tokens", &Request::stop_tokens)
        .def_readwrite("stop_strings", &Request::stop_strings)
        .def_readwrite("n_logprobs", &Request::n_logprobs)
        .def_readwrite("frame", &Request::frame)
        .def_readwrite("wire_fd", &Request::wire_fd)
        .def_readwrite("wire_log", &Request::wire_log)
        .def_readwrite("media", &Request::media)  // Projector.build sets it with the prompt
        .def_property(
            "prediction", [](const Request& r) { return to_array(r.prediction); },
            [](Request& r, const TokenArray& a) { r.prediction = to_tokens(a); });
}

void bind_event(py::module_& m) {
    py::native_enum<Finish>(m, "Finish", "enum.IntEnum")
        .value("NONE", Finish::None)
        .value("STOP", Finish::Stop)
        .value("LENGTH", Finish::Length)
        .value("CANCELLED", Finish::Cancelled)
        .value("ERROR", Finish::Error)
        .finalize();
    py::class_<SpecCounts>(m, "SpecCounts")
        .def_readonly("drafted", &SpecCounts::drafted)
        .def_readonly("accepted", &SpecCounts::accepted)
        .def_readonly("prediction_accepted", &SpecCounts::prediction_accepted)
        .def_readonly("prediction_rejected", &SpecCounts::prediction_rejected);
    py::class_<Event>(m, "Event")
        .def_readonly("id", &Event::id)
        .def_readonly("token", &Event::token)
        .def_readonly("text", &Event::text)
        .def_property_readonly("frame", [](const Event& e) { return bytes_or_none(e.frame); })
        .def_property_readonly("finished", [](const Event& e) { return e.finish != Finish::None; })
        .def_readonly("finish", &Event::finish)
        .def_readonly("stop_index", &Event::stop_index)
        .def_readonly("n_prompt", &Event::n_prompt)
        .def_readonly("n_generated", &Event::n_generated)
        .def_readonly("n_cached", &Event::n_cached)
        .def_readonly("error", &Event::error)
        .def_readonly("queue_ms", &Event::queue_ms)
        .def_readonly("prefill_ms", &Event::prefill_ms)
        .def_readonly("decode_ms", &Event::decode_ms)
        .def_readonly("spec", &Event::spec)
        .def_property_readonly("logprob",
                               [](const Event& e) { return e.has_logprob ? py::object(py::float_(e.logprob)) : py::none(); })
        .def_readonly("top", &Event::top)
        .def_property_readonly("piece", [](const Event& e) { return py::bytes(e.piece); })
        .def_readonly("has_wire", &Event::has_wire)
        .def_readonly("wire_times", &Event::wire_times)
        .def_property_readonly("wire_log", [](const Event& e) { return py::bytes(e.wire_log); })
        .def_readonly("wire_bytes", &Event::wire_bytes);
}

}  // namespace

void bind_engine(py::module_& m) {
    bind_sampling(m);
    bind_params(m);
    bind_request(m);
    bind_event(m);
    py::class_<Engine, Owned<Engine>>(m, "Engine")
        .def(py::init([](std::shared_ptr<Model> model, const EngineParams& params, std::shared_ptr<Model> draft,
                         std::shared_ptr<Projector> projector) {
                 return Owned<Engine>(new Engine(std::move(model), params, std::move(draft), std::move(projector)));
             }),
             "model"_a, "params"_a = EngineParams{}, "draft"_a = std::shared_ptr<Model>(),
             "projector"_a = std::shared_ptr<Projector>(), release_gil())
        .def(
            "submit",
            [](Engine& self, const Request& request) {
                Request own = request;
                py::gil_scoped_release nogil;
                return self.submit(std::move(own));
            },
            "request"_a)
        .def("cancel", &Engine::cancel, "id"_a, release_gil())
        .def("decide_wire", &Engine::decide_wire, "id"_a, "open"_a, release_gil())
        .def_property_readonly_static("REST_OF_FRAME", [](const py::object&) { return Engine::kRestOfFrame; })
        .def("poll", &poll, "timeout_ms"_a = 0)
        .def_property_readonly("event_fd", &Engine::event_fd)
        .def_property_readonly("params", &Engine::params)  // as resolved: batch capped, chunk set
        .def_property_readonly("n_ctx", &Engine::n_ctx_seq)
        .def_property_readonly("flash_attn", &Engine::flash_attn)
        .def_property_readonly("deterministic", &Engine::deterministic)
        .def("stats", &stats)
        .def("slot_requests", &Engine::slot_requests)
        .def("shutdown", &Engine::shutdown, release_gil());
}

}  // namespace mr::bind
