// The generation engine: one thread owns the llama_context and runs continuous batching.
//
// Requests are submitted from any thread and queued. Each step the engine thread admits queued
// requests into free slots (one llama sequence each; one KV cache for all, or one per slot),
// builds ONE batch holding a token for every decoding slot plus bounded prompt chunks for slots
// in prefill, calls llama_decode once, samples, and publishes the results as events. Consumers
// drain events with poll(); a file descriptor becomes readable whenever events are pending.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "mr/context.hpp"
#include "mr/draft_model.hpp"
#include "mr/drafter.hpp"
#include "mr/notifier.hpp"
#include "mr/projector.hpp"
#include "mr/sampler.hpp"
#include "mr/text.hpp"
#include "mr/wire.hpp"

namespace mr {

class Model;

struct EngineParams {
    int n_ctx = 4096;      // KV cells: shared by all slots (the limit of one sequence), or split
    int n_slots = 4;       // sequences decoded together
    int n_batch = 512;     // tokens per step: decode tokens + prompt chunks
    int n_ubatch = 512;
    int n_threads = 0;     // 0: llama.cpp's count of math cores
    int n_threads_batch = 0;
    int max_queue = 64;    // requests waiting for a slot; one more is refused (Overloaded)
    int prefill_chunk = 0; // most prompt tokens one slot adds to a step; 0: n_batch
    int flash_attn = -1;   // -1: auto (CPUs: on for request contexts up to 1,024; GPUs: llama.cpp's), 0: off, 1: on
    // The share of the cells that idle slots' caches (prefixes kept for the next turn) may hold
    // once another request starts; while a single one runs, the last idle cache is kept besides
    // when it is long (512 cells or more).
    // In a cache shared by the slots every decode step attends over the whole used range, so
    // idle cells slow every running sequence (Engine::trim_idle_caches says by how much).
    float idle_cache = 0.0f;
    // One KV stream per slot, n_ctx / n_slots cells each (llama.cpp's non-unified cache, as in
    // llama-server's default), instead of one shared by all: a sequence's attention then spans
    // only its own cells and idle caches cost the running sequences nothing, but one request
    // can use only its slot's share of the context, and a prefix taken from another slot is
    // copied (the whole stream) instead of shared. Not faster on every CPU (docs/kv-cache.md).
    bool per_slot_kv = false;
    // Batch invariance: a token's logits depend only on the model and its own sequence, not on
    // what shares its step, how its prompt was chunked or whether its prefix came from the cache.
    // It implies per_slot_kv (a slot's cells stay in position order, so attention sums them in
    // the same order cold or cached) and flash attention (one query row over the whole KV range),
    // and computes with ggml's reference kernels (one vec_dot per output element; vendor/patches/
    // 0006). It holds only where the CPU computes every step (Model::plain_cpu_weights).
    bool deterministic = false;
    // Speculative decoding (mr/drafter.hpp): a generating slot drafts tokens from its own prompt
    // and answer (n-gram lookup) and the step verifies them with its next token. Off: no n-gram
    // drafts (a request's predicted output still drafts). Auto: a draft as long as it pays, from
    // the slot's acceptance and the measured cost of longer steps, and none while prompts are
    // being computed. Ngram: every draft found, up to spec_max (for measuring).
    enum class Spec : int { Off = 0, Auto = 1, Ngram = 2 };
    Spec spec = Spec::Auto;
    // The longest draft (predictions and long matches: a text being copied); a draft after a
    // short match (2-15 tokens) is at most kShortDraft.
    int spec_max = 64;
};

struct Request {
    std::vector<llama_token> prompt;
    SamplingParams sampling;
    int max_tokens = -1;  // -1: until end-of-generation or the context is full
    bool ignore_eos = false;
    std::vector<llama_token> stop_tokens;
    std::vector<std::string> stop_strings;  // the output ends before the first one it contains
    int n_logprobs = -1;  // -1: none; 0: the chosen token's; N: also the N most likely tokens
    FrameFormat frame;    // when set, each event's text also comes rendered as a wire frame
    // With a frame format: the client's socket, which the engine thread then writes the frames to
    // itself (mr/wire.hpp), once the server decides (decide_wire). -1: frames go in the events.
    int wire_fd = -1;
    size_t wire_log = 0;  // payload bytes of the written frames kept for the request log
    // OpenAI Predicted Outputs: the answer the client expects, drafted from whatever spec is.
    std::vector<llama_token> prediction;
    // Images and audio in the prompt (Projector::build), in prompt order: their places in
    // `prompt` hold placeholders. Needs an engine with a projector.
    std::vector<MediaSpan> media;
};

// Speculation's counts for one request (on its finish).
struct SpecCounts {
    int drafted = 0;             // draft tokens verified
    int accepted = 0;            // of them, kept
    int prediction_accepted = 0; // the same for drafts taken from the request's prediction
    int prediction_rejected = 0;
};

enum class Finish : int { None = 0, Stop = 1, Length = 2, Cancelled = 3, Error = 4 };

struct Event {
    uint64_t id = 0;
    llama_token token = -1;  // -1: this event carries no token (a finish on its own)
    std::string text;        // output text ready to emit: whole UTF-8 characters, stop strings cut
    std::string frame;       // `text` rendered by the request's FrameFormat (when it has one)
    std::string piece;       // the token's own bytes, only when logprobs were asked for
    Finish finish = Finish::None;
    int stop_index = -1;     // the stop string that ended the output (Finish::Stop), or -1
    int n_prompt = 0;
    int n_generated = 0;
    int n_cached = 0;  // prompt tokens whose KV cells were reused, not recomputed
    std::string error;
    // Set on the event that finishes a request: milliseconds waiting for a slot, from admission
    // to the first token (prefill), and from the first token to the end (decode).
    float queue_ms = 0.0f, prefill_ms = 0.0f, decode_ms = 0.0f;
    bool has_logprob = false;                          // logprobs were asked for
    // On the finish of a request with a wire: when each frame sent by the engine went out
    // (CLOCK_MONOTONIC seconds), their payload (up to Request::wire_log) and its size.
    bool has_wire = false;
    std::vector<double> wire_times;
    std::string wire_log;
    size_t wire_bytes = 0;
    SpecCounts spec;                                   // set on a finish
    float logprob = 0.0f;                              // of `token`, when logprobs were asked
    std::vector<std::pair<llama_token, float>> top;    // most likely tokens, best first
};

struct EngineStats {
    int n_slots = 0;
    int busy_slots = 0;
    int queued = 0;
    uint64_t steps = 0;
    uint64_t tokens_prompt = 0;
    uint64_t tokens_generated = 0;
    uint64_t requests_finished = 0;
    uint64_t prefix_hits = 0;         // requests that reused cached KV cells
    uint64_t tokens_reused = 0;       // prompt tokens not recomputed thanks to them
    uint64_t spec_drafted = 0;        // draft tokens verified (speculative decoding)
    uint64_t spec_accepted = 0;       // of them, kept
    // The share of drafts kept after long matches over recent requests, where a new request's
    // own counts start: matches in its own text (a copied file or source), and in other
    // requests' text (an answer asked for again).
    double spec_copy_rate = 0.0, spec_recall_rate = 0.0;
    // Drafts found but not taken (they did not pay) whose first token was checked against the
    // token the step sampled: acceptance learned without drafting.
    uint64_t spec_checked = 0;
    uint64_t media_encoded = 0;       // images and audio chunks encoded
    // One past the highest KV cell in use after the last step: in a shared cache each step's
    // attention spans that many cells (padded to 256), free ones included (Engine::lower_high_cells).
    uint64_t kv_span = 0;
    // Where the engine thread's time went, summed over all steps (microseconds): building the
    // batch, llama_decode, sampling plus turning tokens into events, handing events over, and
    // the bookkeeping between steps (admission, cancels, waking up).
    uint64_t us_batch = 0, us_decode = 0, us_sample = 0, us_publish = 0, us_other = 0;
};

class Engine {
public:
    // `draft`: a smaller model with the same vocabulary that drafts where n-gram lookup finds
    // nothing (speculative decoding; none: n-gram drafts and predictions only).
    // `projector`: the model's multimodal projector, for requests with images or audio.
    Engine(std::shared_ptr<Model> model, const EngineParams& params, std::shared_ptr<Model> draft = nullptr,
           std::shared_ptr<Projector> projector = nullptr);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Validates, then queues. Throws InvalidArgument, ContextOverflow or Overloaded.
    uint64_t submit(Request request);
    // Frees the request's slot before the next step; a queued request never starts.
    void cancel(uint64_t id);
    // For a request submitted with a wire: send its frames from the engine thread (open) or
    // hand them back in events (released). Applied at the next step; frames made before it are
    // held, so the server's own bytes (the response head) always come first on the wire.
    void decide_wire(uint64_t id, bool open);
    // Event::token of an event whose frame is the unsent end of a frame the engine began writing
    // (the server sends it as it is: it is neither a new token nor a whole frame).
    static constexpr llama_token kRestOfFrame = -2;
    // Every pending event; waits up to timeout_ms (0: no wait, < 0: forever) when none are.
    std::vector<Event> poll(int timeout_ms);
    int event_fd() const { return notifier_.fd(); }
    EngineStats stats() const;
    // The request running in each slot, 0 where it is idle (llama-server's /slots, in short).
    std::vector<uint64_t> slot_requests() const;
    const EngineParams& params() const { return params_; }
    int n_ctx_seq() const { return n_ctx_seq_; }
    bool flash_attn() const { return flash_attn_; }
    // The batch-invariant mode is on and can hold (EngineParams::deterministic).
    bool deterministic() const { return deterministic_; }
    // Stops the thread; queued and running requests end with Finish::Cancelled. Idempotent.
    void shutdown();

private:
    using Clock = std::chrono::steady_clock;
    struct Pending {
        uint64_t id = 0;
        Request request;
        std::unique_ptr<Sampler> sampler;
        Clock::time_point submitted;
        std::unique_ptr<WireWriter> wire;
    };
    // A slot's speculative decoding: where its drafts come from, how well they do, this step's.
    struct Speculation {
        bool on = false;                   // the request may draft (mode, prediction, model)
        NgramIndex history;                // prompt and answer, for n-gram lookup
        Prediction prediction;
        Acceptance acceptance;              // of drafts after a short match (or from a draft model)
        Acceptance long_acceptance;         // of drafts after a long one (a text being copied)
        Acceptance recall_acceptance;       // of drafts after a long match in another request's text
        bool long_match = false;            // this step's draft follows a long match
        bool recalled = false;              // ... in another request's text
        std::vector<llama_token> draft;    // this step's draft, decoded after the slot's pending token
        std::vector<int> draft_idx;        // their batch outputs
        // The first token of a draft found but not taken this step (-1: none), checked against
        // the token the step samples: acceptance is still learned while drafting does not pay, so
        // a slot whose rate fell at one bad draft finds its way back to drafting.
        llama_token untried = -1;
        bool from_prediction = false;
        SpecCounts counts;
    };
    // A slot's life, as llama-server's slot_state: free (its cells may hold a cache for the next
    // request), computing its request's prompt in chunks, then generating (a token sampled and
    // waiting to be decoded, with its draft if it has one) until the request finishes.
    enum class SlotState { Idle, Prefill, Generating };
    // One sequence of the unified KV cache; seq id = index in slots_.
    struct Slot {
        SlotState state = SlotState::Idle;
        bool active() const { return state != SlotState::Idle; }
        uint64_t id = 0;
        uint64_t admitted = 0;           // admission order, for evicting the newest first
        Request request;
        std::unique_ptr<Sampler> sampler;
        TextAssembler text;
        size_t n_prompt_done = 0;        // prompt tokens already in the KV cache
        int n_past = 0;                  // next position
        int n_cached = 0;                // prompt tokens reused from the cache on admission
        int n_generated = 0;
        std::vector<llama_token> cache;  // the tokens whose KV cells this sequence holds, in order
        uint64_t last_used = 0;          // step of the last use, for dropping idle caches (LRU)
        Clock::time_point submitted, admitted_at, first_token;
        llama_token pending = -1;        // Generating: sampled, not yet decoded
        int logits_idx = -1;             // batch output to sample from after this step
        int n_in_batch = 0;              // tokens this slot put into the current batch
        bool last_with_rest = false;     // the last prompt token is computed with the ones before it
        size_t next_media = 0;           // request.media's first span not yet in the KV cache
        std::vector<float> media_embd;   // that span's embeddings, once encoded (Engine::media_step)
        std::unique_ptr<WireWriter> wire;  // the client's socket, for a request that has one
        Speculation spec;
    };

    void run();
    bool wait_for_work();  // blocks until there is work; admits and cancels under mutex_
    void admit();          // mutex_ held
    void apply_cancels();  // mutex_ held
    void apply_wires();    // mutex_ held
    void drain_all();
    void step();
    Slot* media_due();
    void media_step();
    void check_media(const Request& request) const;
    int build_batch();
    bool decode_batch();
    void sample_outputs();
    void plan_drafts(const std::vector<size_t>& generating);
    int draft_room(const Slot& slot, int room) const;
    static Acceptance& acceptance_of(Speculation& spec);
    std::vector<llama_token> propose(Slot& slot, int k_max);
    void settle_draft(Slot& slot, size_t accepted);
    // Counts `kept` of `drafted` tokens against the slot's acceptance (and the engine's, after a long match).
    void record_acceptance(Speculation& spec, int drafted, int kept);
    bool emit_sampled(Slot& slot, llama_token token, int logits_idx);
    bool ends(const Slot& slot, llama_token token) const;  // an end-of-generation or stop token
    void finish(Slot& slot, Finish reason, std::string error = {}, bool keep_cache = true);
    void release(Slot& slot, bool keep_cache);
    void emit_token(Slot& slot, llama_token token, int logits_idx);
    static void add_text(Event& ev, const Slot& slot, std::string text);
    void emit(Slot& slot, Event ev);
    void publish_frames(uint64_t id, std::vector<std::string> frames, bool first_is_rest);
    void add_logprobs(Event& ev, int logits_idx, int n_top) const;
    static void add_finish_info(Event& ev, const Slot& slot);
    void start(Pending p);
    bool shares_running_prefill(const std::vector<llama_token>& prompt) const;
    size_t pick_slot(const std::vector<llama_token>& prompt) const;
    int stream_cost(size_t seq) const;
    int reuse_prefix(size_t seq, const Request& request, size_t n_left);
    int prompt_chunk(const Slot& slot, int budget) const;
    bool drop_idle_cache();
    void trim_idle_caches();
    void lower_high_cells();
    void drop_cells(size_t seq);
    void clear_seq(size_t seq);
    void evict_newest(const std::string& why);
    void publish();

    std::shared_ptr<Model> model_;
    EngineParams params_;
    bool flash_attn_ = false;  // before ctx_: make_context sets it
    bool deterministic_ = false;
    bool can_speculate_ = false;  // the model's memory can drop a sequence's last cells (not recurrent)
    ContextPtr ctx_;
    int n_ctx_seq_ = 0;
    size_t short_prompt_ = 0;  // prompts shorter than this compute their last token with the rest
    Batch batch_;
    StepCost step_cost_;  // decode time by tokens in the step, for choosing draft lengths
    NgramMemory memory_;  // earlier requests' tokens, drafted from where a request repeats one
    // Drafts after a long match, over all requests: a new request's prior for its own. A text
    // copied by one request (a file, a quoted source, an answer asked for again) is copied the
    // same way by the next; starting every request from a fixed guess kept 8 copies of a request
    // whose answer was in memory from drafting it at all. Matches in another request's text are
    // counted apart: 16 tokens shared by two unrelated stories (a stock opening) go on for about
    // 5 more (measured: 0.81-0.83 kept a token, against 0.95-0.97 for a story's own repeats), and
    // at the copy rate 8 such chats drafted 27-64 tokens a slot and kept a quarter.
    Acceptance long_acceptance_{kLongPrior}, recall_acceptance_{kLongPrior};
    static constexpr double kLongPrior = 0.9;
    std::unique_ptr<DraftModel> draft_;  // the draft model, when there is one
    std::shared_ptr<Projector> projector_;  // images and audio, when the model has one
    std::vector<Slot> slots_;
    std::unique_ptr<std::atomic<uint64_t>[]> slot_ids_;  // slots_[i].id while active, else 0: any thread reads
    std::vector<Event> out_;  // events of the current step (engine thread only)
    uint64_t admissions_ = 0;

    mutable std::mutex mutex_;  // guards everything below
    std::condition_variable work_cv_;
    std::condition_variable events_cv_;
    std::deque<Pending> queue_;
    std::unordered_set<uint64_t> cancels_;
    std::vector<std::pair<uint64_t, bool>> wire_calls_;  // decide_wire calls not applied yet
    std::vector<Event> events_;
    uint64_t next_id_ = 1;
    bool stopping_ = false;
    bool thread_done_ = false;  // the engine thread has published its last events

    std::atomic<int> busy_{0};
    std::atomic<uint64_t> steps_{0}, tokens_prompt_{0}, tokens_generated_{0}, finished_{0};
    std::atomic<uint64_t> prefix_hits_{0}, tokens_reused_{0};
    std::atomic<uint64_t> spec_drafted_{0}, spec_accepted_{0}, media_encoded_{0}, kv_span_{0};
    std::atomic<double> spec_copy_rate_{kLongPrior}, spec_recall_rate_{kLongPrior};
    std::atomic<uint64_t> spec_checked_{0};
    std::atomic<uint64_t> us_batch_{0}, us_decode_{0}, us_sample_{0}, us_publish_{0}, us_other_{0};

    Notifier notifier_;
    std::thread thread_;
};

}  // namespace mr
