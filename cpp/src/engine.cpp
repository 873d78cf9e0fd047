#include "mr/engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>

#include "mr/errors.hpp"
#include "mr/model.hpp"

namespace mr {
namespace {

constexpr int kMaxSlots = 256;  // llama.cpp's LLAMA_MAX_SEQ
constexpr size_t kFewColumns = 64;  // below it a CPU step's kernels treat each column alike (prompt_chunk)
// Flash attention "auto" where CPUs compute: off for a request context longer than this. On a
// CPU its kernel wins while the KV range is short and loses as it fills (docs/kv-cache.md,
// "Flash attention"); a context this short stays where it wins or loses little.
constexpr int kFlashAttnMaxCtx = 1024;
constexpr int kMaxDraft = 64;
constexpr int kShortDraft = 8;  // after a match of fewer than NgramIndex::kLongMatch tokens

void validate(const EngineParams& p) {
    if (p.n_ctx <= 0) throw InvalidArgument("n_ctx must be > 0, got " + std::to_string(p.n_ctx));
    if (p.n_slots < 1 || p.n_slots > kMaxSlots) {
        throw InvalidArgument("n_slots must be in [1, " + std::to_string(kMaxSlots) + "]");
    }
    if (p.n_batch < p.n_slots) throw InvalidArgument("n_batch must be >= n_slots (one token per slot per step)");
    if (p.n_ubatch < 1) throw InvalidArgument("n_ubatch must be > 0");
    if (p.n_threads < 0 || p.n_threads_batch < 0) throw InvalidArgument("thread counts must be >= 0");
    if (p.max_queue < 0) throw InvalidArgument("max_queue must be >= 0");
    if (p.prefill_chunk < 0) throw InvalidArgument("prefill_chunk must be >= 0");
    if (!(p.idle_cache >= 0.0f && p.idle_cache <= 1.0f)) throw InvalidArgument("idle_cache must be in [0, 1]");
    if (p.spec_max < 0 || p.spec_max > kMaxDraft) {
        throw InvalidArgument("spec_max must be in [0, " + std::to_string(kMaxDraft) + "]");
    }
    if (p.deterministic && p.flash_attn == 0) {
        throw InvalidArgument("the deterministic mode needs flash attention (flash_attn off was asked for)");
    }
}

// The parameters as the engine runs them: validated, with what the deterministic mode implies,
// and flash attention "auto" decided where CPUs compute (GPUs keep llama.cpp's choice: on).
EngineParams resolved(EngineParams p) {
    validate(p);
    if (p.deterministic) {
        p.per_slot_kv = true;  // position-ordered cells per sequence (EngineParams::deterministic)
        p.flash_attn = 1;
    }
    const int request_ctx = p.per_slot_kv ? p.n_ctx / p.n_slots : p.n_ctx;
    if (p.flash_attn < 0 && Model::no_gpu()) p.flash_attn = request_ctx <= kFlashAttnMaxCtx ? 1 : 0;
    return p;
}

llama_context_params context_params(const EngineParams& p) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = p.n_ctx;
    cp.n_seq_max = p.n_slots;
    cp.n_batch = p.n_batch;
    cp.n_ubatch = std::min(p.n_ubatch, p.n_batch);
    cp.n_threads = p.n_threads > 0 ? p.n_threads : default_threads();
    cp.n_threads_batch = p.n_threads_batch > 0 ? p.n_threads_batch : cp.n_threads;
    cp.kv_unified = !p.per_slot_kv;  // shared: a prefix can be shared without copies
    cp.no_perf = true;
    cp.flash_attn_type = p.flash_attn < 0    ? LLAMA_FLASH_ATTN_TYPE_AUTO
                         : p.flash_attn == 0 ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                             : LLAMA_FLASH_ATTN_TYPE_ENABLED;
    return cp;
}

// Adds the microseconds since the last call to one of the engine's time counters.
class Lap {
public:
    Lap() : last_(std::chrono::steady_clock::now()) {}
    void to(std::atomic<uint64_t>& counter) {
        const auto now = std::chrono::steady_clock::now();
        counter.fetch_add(std::chrono::duration_cast<std::chrono::microseconds>(now - last_).count(),
                          std::memory_order_relaxed);
        last_ = now;
    }

private:
    std::chrono::steady_clock::time_point last_;
};

}  // namespace

Engine::Engine(std::shared_ptr<Model> model, const EngineParams& params, std::shared_ptr<Model> draft,
               std::shared_ptr<Projector> projector)
    : model_(std::move(model)), params_(resolved(params)),
      ctx_(make_context(*model_, context_params(params_), &flash_attn_)),
      n_ctx_seq_(static_cast<int>(llama_n_ctx_seq(ctx_.get()))),
      batch_(params_.n_batch + params_.n_slots, 1),
      step_cost_(params_.n_batch + params_.n_slots),
      slots_(params_.n_slots),
      slot_ids_(new std::atomic<uint64_t>[params_.n_slots]) {
    for (int i = 0; i < params_.n_slots; ++i) slot_ids_[i].store(0);
    // llama.cpp caps a context's batch at its size; a step beyond the cap would abort the process
    // (GGML_ASSERT in llama_decode), so the engine never builds one (batch_ keeps its capacity).
    params_.n_batch = std::min(params_.n_batch, static_cast<int>(llama_n_batch(ctx_.get())));
    if (params_.n_batch < params_.n_slots) {
        throw InvalidArgument("n_ctx " + std::to_string(llama_n_ctx(ctx_.get())) + " leaves a batch of " +
                              std::to_string(params_.n_batch) + " tokens, fewer than n_slots");
    }
    if (params_.prefill_chunk == 0 || params_.prefill_chunk > params_.n_batch) params_.prefill_chunk = params_.n_batch;
    short_prompt_ = model_->plain_cpu_weights() ? kFewColumns : 0;
    // A GPU or an RPC worker computes with kernels of its own: there the mode cannot hold, and
    // deterministic() says so (the Python side warns at load).
    deterministic_ = params_.deterministic && model_->plain_cpu_weights() &&
                     llama_set_reference_kernels(ctx_.get(), true);
    // A rejected draft's cells are dropped from the end of its sequence: recurrent state cannot be.
    can_speculate_ = params_.spec_max > 0 && !llama_model_is_recurrent(model_->get()) &&
                     !llama_model_is_hybrid(model_->get());
    if (draft != nullptr) {
        draft_ = std::make_unique<DraftModel>(std::move(draft), *model_, n_ctx_seq_, params_.n_slots,
                                              params_.n_threads, deterministic_);
    }
    // In the shared cache each sequence's cells go into 64-cell pages of its own (vendor/patches/0013):
    // several slots' drafts in one step then skip every other sequence's pages, tile by tile.
    if (!params_.per_slot_kv) llama_memory_set_paged(llama_get_memory(ctx_.get()), true);
    projector_ = std::move(projector);
    thread_ = std::thread([this] { run(); });
}

Engine::~Engine() { shutdown(); }

void Engine::shutdown() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) return;
        stopping_ = true;
    }
    work_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

uint64_t Engine::submit(Request request) {
    if (request.prompt.empty()) throw InvalidArgument("the prompt is empty");
    check_media(request);
    auto span = request.media.begin();
    for (size_t i = 0; i < request.prompt.size(); ++i) {
        if (span != request.media.end() && i == span->start) {
            i = span++->end() - 1;  // placeholders
            continue;
        }
        model_->check_token(request.prompt[i]);
    }
    for (llama_token t : request.stop_tokens) model_->check_token(t);
    if (request.n_logprobs < -1 || request.n_logprobs > 20) throw InvalidArgument("top_logprobs must be in [0, 20]");
    if (request.max_tokens == 0 || request.max_tokens < -1) {
        throw InvalidArgument("max_tokens must be >= 1 (or -1 for no limit)");
    }
    const int n_prompt = static_cast<int>(request.prompt.size());
    const int need = n_prompt + std::max(request.max_tokens, 1);
    if (need > n_ctx_seq_) throw ContextOverflow(need, n_ctx_seq_);
    auto sampler = std::make_unique<Sampler>(*model_, request.sampling);  // validates sampling
    std::unique_ptr<WireWriter> wire;
    if (request.wire_fd >= 0) {
        if (request.frame.empty()) throw InvalidArgument("a request with a wire needs a frame format");
        wire = std::make_unique<WireWriter>(request.wire_fd, request.frame.chunked, request.wire_log);
    }

    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw Error("the engine is shut down");
    if (static_cast<int>(queue_.size()) >= params_.max_queue + std::max(0, params_.n_slots - busy_.load())) {
        throw Overloaded("the request queue is full (" + std::to_string(params_.max_queue) + " waiting)");
    }
    const uint64_t id = next_id_++;
    queue_.push_back(Pending{id, std::move(request), std::move(sampler), Clock::now(), std::move(wire)});
    work_cv_.notify_one();
    return id;
}

// Media spans lie in order inside the prompt, which ends with text (its last token's logits
// start the answer), and need a projector.
void Engine::check_media(const Request& request) const {
    if (request.media.empty()) return;
    if (!projector_) throw InvalidArgument("this model takes text only: it has no multimodal projector");
    size_t end = 0;
    for (const MediaSpan& s : request.media) {
        if (!s.media || s.start < end || s.end() >= request.prompt.size()) {
            throw InvalidArgument("media spans must lie in order inside the prompt, before its last token");
        }
        for (size_t i = s.start; i < s.end(); ++i) {
            if (!is_placeholder(request.prompt[i])) throw InvalidArgument("a media span's tokens must be placeholders");
        }
        end = s.end();
    }
}

void Engine::decide_wire(uint64_t id, bool open) {
    std::lock_guard<std::mutex> lock(mutex_);
    wire_calls_.emplace_back(id, open);
    work_cv_.notify_one();
}

void Engine::cancel(uint64_t id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = std::find_if(queue_.begin(), queue_.end(), [id](const Pending& p) { return p.id == id; });
    if (it != queue_.end()) {  // never started: answer at once
        Event ev;
        ev.id = id;
        ev.finish = Finish::Cancelled;
        ev.n_prompt = static_cast<int>(it->request.prompt.size());
        queue_.erase(it);
        events_.push_back(std::move(ev));
        events_cv_.notify_all();
        notifier_.notify();
        return;
    }
    cancels_.insert(id);
    work_cv_.notify_one();
}

std::vector<Event> Engine::poll(int timeout_ms) {
    notifier_.clear();  // before draining: an event published after this re-arms the fd
    std::unique_lock<std::mutex> lock(mutex_);
    auto ready = [this] { return !events_.empty() || thread_done_; };
    if (timeout_ms < 0) {
        events_cv_.wait(lock, ready);
    } else if (timeout_ms > 0) {
        events_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), ready);
    }
    std::vector<Event> out;
    out.swap(events_);
    return out;
}

EngineStats Engine::stats() const {
    EngineStats s;
    s.n_slots = params_.n_slots;
    s.busy_slots = busy_.load();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        s.queued = static_cast<int>(queue_.size());
    }
    s.steps = steps_.load();
    s.tokens_prompt = tokens_prompt_.load();
    s.tokens_generated = tokens_generated_.load();
    s.requests_finished = finished_.load();
    s.prefix_hits = prefix_hits_.load();
    s.tokens_reused = tokens_reused_.load();
    s.spec_drafted = spec_drafted_.load();
    s.spec_accepted = spec_accepted_.load();
    s.spec_copy_rate = spec_copy_rate_.load();
    s.spec_recall_rate = spec_recall_rate_.load();
    s.spec_checked = spec_checked_.load();
    s.media_encoded = media_encoded_.load();
    s.kv_span = kv_span_.load();
    s.us_batch = us_batch_.load();
    s.us_decode = us_decode_.load();
    s.us_sample = us_sample_.load();
    s.us_publish = us_publish_.load();
    s.us_other = us_other_.load();
    return s;
}

std::vector<uint64_t> Engine::slot_requests() const {
    std::vector<uint64_t> ids(slots_.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = slot_ids_[i].load();
    return ids;
}

// ---- engine thread ----

void Engine::run() {
    while (wait_for_work()) {
        step();
        Lap lap;
        publish();
        lap.to(us_publish_);
    }
    drain_all();
    publish();
    {
        std::lock_guard<std::mutex> lock(mutex_);
        thread_done_ = true;
    }
    events_cv_.notify_all();
    notifier_.notify();
}

bool Engine::wait_for_work() {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto has_work = [this] {
        return stopping_ || !queue_.empty() || !cancels_.empty() || !wire_calls_.empty() || busy_.load() > 0;
    };
    if (!has_work()) {
        park_threads(ctx_);  // idle: the pool's threads must not spin on cores others need
        work_cv_.wait(lock, has_work);
    }
    if (stopping_) return false;
    Lap lap;  // waiting for work is idle time, not step time: count from here
    apply_cancels();
    apply_wires();
    admit();
    lap.to(us_other_);
    return true;
}

void Engine::apply_cancels() {
    for (Slot& slot : slots_) {
        if (slot.active() && cancels_.count(slot.id)) finish(slot, Finish::Cancelled);
    }
    cancels_.clear();  // ids of finished or unknown requests are simply dropped
}

void Engine::apply_wires() {
    for (const auto& [id, open] : wire_calls_) {
        WireWriter* wire = nullptr;
        for (Slot& s : slots_) {
            if (s.active() && s.id == id) wire = s.wire.get();
        }
        for (Pending& p : queue_) {
            if (p.id == id) wire = p.wire.get();
        }
        if (wire == nullptr) continue;  // finished (its held frames went out with its finish)
        bool rest = false;
        publish_frames(id, wire->decide(open, rest), rest);
    }
    wire_calls_.clear();
}

// Frames handed back by a wire, in order, as events of their own (no token, no finish).
void Engine::publish_frames(uint64_t id, std::vector<std::string> frames, bool first_is_rest) {
    for (size_t i = 0; i < frames.size(); ++i) {
        Event ev;
        ev.id = id;
        ev.token = i == 0 && first_is_rest ? kRestOfFrame : -1;
        ev.frame = std::move(frames[i]);
        out_.push_back(std::move(ev));
    }
}

void Engine::admit() {
    bool started = false;
    for (auto it = queue_.begin(); it != queue_.end() && busy_.load() < params_.n_slots;) {
        if (shares_running_prefill(it->request.prompt)) {
            ++it;  // admitted once that prefill is done: the prefix is then computed only once
            continue;
        }
        Pending p = std::move(*it);
        it = queue_.erase(it);
        start(std::move(p));
        started = true;
    }
    // Once for the pass: requests that came together (a conversation's pictures sent again by
    // several clients) each take their own cache before the others' go.
    if (started) {
        trim_idle_caches();
        lower_high_cells();
    }
}

void Engine::start(Pending p) {
    const size_t seq = pick_slot(p.request.prompt);
    Slot& slot = slots_[seq];
    slot_ids_[seq].store(p.id);
    const bool last_with_rest = p.request.prompt.size() < short_prompt_;
    const int reused = reuse_prefix(seq, p.request, last_with_rest ? 2 : 1);
    slot.last_with_rest = last_with_rest;
    slot.state = SlotState::Prefill;
    slot.id = p.id;
    slot.admitted = ++admissions_;
    slot.request = std::move(p.request);
    slot.sampler = std::move(p.sampler);
    slot.text = TextAssembler(slot.request.stop_strings);
    slot.n_prompt_done = reused;
    slot.next_media = 0;  // spans in the reused prefix are whole (reuse_prefix) and done
    while (slot.next_media < slot.request.media.size() && slot.request.media[slot.next_media].start < slot.n_prompt_done) {
        ++slot.next_media;
    }
    slot.media_embd.clear();
    slot.n_past = position_of(slot.request.media, reused);
    slot.n_cached = reused;
    slot.n_generated = 0;
    slot.pending = -1;
    slot.logits_idx = -1;
    slot.n_in_batch = 0;
    slot.submitted = p.submitted;
    slot.admitted_at = Clock::now();
    slot.first_token = {};
    slot.wire = std::move(p.wire);
    Speculation& spec = slot.spec;
    if (spec.on) memory_.add(std::move(spec.history));  // the slot's last request, for those that repeat it
    spec = Speculation{};
    spec.long_acceptance = Acceptance(long_acceptance_.rate());
    spec.recall_acceptance = Acceptance(recall_acceptance_.rate());
    spec.on = can_speculate_ && (params_.spec != EngineParams::Spec::Off || !slot.request.prediction.empty());
    if (spec.on) {
        spec.history.append(slot.request.prompt);
        if (!slot.request.prediction.empty()) spec.prediction = Prediction(slot.request.prediction);
    }
    busy_++;
    if (reused > 0) {
        prefix_hits_++;
        tokens_reused_ += reused;
    }
}

// True when a slot still in prefill is computing a long prefix of `prompt` (n > 1 choices, or
// many requests with one system prompt): waiting for it beats computing the prefix twice.
bool Engine::shares_running_prefill(const std::vector<llama_token>& prompt) const {
    constexpr size_t kMinShared = 16;
    for (const Slot& s : slots_) {
        if (s.state != SlotState::Prefill) continue;
        const size_t shared = std::min(common_prefix(s.request.prompt, prompt), prompt.size() - 1);
        if (shared >= kMinShared && shared > s.n_prompt_done) return true;
    }
    return false;
}

// A free slot for `prompt`. Its own cache is reused when it holds a real part of the prompt (a
// conversation going on); otherwise an empty slot, else the least recently used one, so that a
// valuable cache (a long shared system prompt) is not overwritten by an unrelated request for the
// sake of a few common template tokens. A prefix held by any other slot is still shared.
// With one KV stream per slot the layout comes first (stream_cost).
size_t Engine::pick_slot(const std::vector<llama_token>& prompt) const {
    constexpr size_t kMinReuse = 32;
    int least = std::numeric_limits<int>::max();
    for (size_t seq = 0; seq < slots_.size(); ++seq) {
        if (!slots_[seq].active()) least = std::min(least, stream_cost(seq));
    }
    size_t best = slots_.size(), best_len = 0;
    size_t fallback = slots_.size();
    for (size_t seq = 0; seq < slots_.size(); ++seq) {
        const Slot& s = slots_[seq];
        if (s.active() || stream_cost(seq) != least) continue;
        const size_t len = common_prefix(s.cache, prompt);
        if (len >= kMinReuse && len > best_len) {
            best = seq;
            best_len = len;
        }
        const auto rank = [](const Slot& x) { return std::make_pair(!x.cache.empty(), x.last_used); };
        if (fallback == slots_.size() || rank(s) < rank(slots_[fallback])) fallback = seq;
    }
    return best != slots_.size() ? best : fallback;
}

// With one KV stream per slot, llama.cpp puts only consecutive sequence ids into one pass over
// the weights (split_equal(sequential = true)): busy slots 1, 3 and 5 cost three passes per
// step, 1, 2 and 3 one. So a free slot is ranked by the runs of busy slots it adds (+1 alone, 0
// next to one run, -1 joining two); a prefix held by another slot is copied into it once
// (reuse_prefix), which is cheaper than a pass per step. One shared cache has no such rule: 0.
int Engine::stream_cost(size_t seq) const {
    if (!params_.per_slot_kv) return 0;
    const bool left = seq > 0 && slots_[seq - 1].active();
    const bool right = seq + 1 < slots_.size() && slots_[seq + 1].active();
    return 1 - static_cast<int>(left) - static_cast<int>(right);
}

// Reuses the longest cached prefix of `prompt` for sequence `seq`, from its own cells or shared
// from another sequence's (llama_memory_seq_cp, no copy of data); returns the tokens reused. At
// least `n_left` prompt tokens are left to decode (all of a shorter prompt): the last one's
// logits start the generation, computed as in a cold prompt (Engine::prompt_chunk).
int Engine::reuse_prefix(size_t seq, const Request& request, size_t n_left) {
    llama_memory_t mem = llama_get_memory(ctx_.get());
    const auto& prompt = request.prompt;
    const size_t limit = prompt.size() > n_left ? prompt.size() - n_left : 0;
    // Equal placeholders are the same picture; a prefix still holds each media chunk whole.
    const auto reusable = [&](const std::vector<llama_token>& cache) {
        return whole_media_prefix(request.media, std::min(common_prefix(cache, prompt), limit));
    };
    Slot& dst = slots_[seq];
    size_t own = reusable(dst.cache);
    size_t src = seq, shared = 0;
    for (size_t other = 0; other < slots_.size(); ++other) {
        if (other == seq) continue;
        const size_t len = reusable(slots_[other].cache);
        if (len > shared) {
            shared = len;
            src = other;
        }
    }
    // Cells are removed and copied by position (fewer than cells after a picture under M-RoPE).
    const auto at = [&](size_t n) { return position_of(request.media, n); };
    // A sliding-window cache may have dropped the first cells: such a prefix is not whole.
    auto whole = [&](size_t s) { return llama_memory_seq_pos_min(mem, static_cast<llama_seq_id>(s)) <= 0; };
    if (shared > own && whole(src)) {
        clear_seq(seq);
        const auto from = static_cast<llama_seq_id>(src), to = static_cast<llama_seq_id>(seq);
        if (params_.per_slot_kv) {
            // Across streams llama.cpp copies only whole streams (at the next decode, before it
            // writes): copy, then drop what follows the shared part.
            llama_memory_seq_cp(mem, from, to, -1, -1);
            llama_memory_seq_rm(mem, to, at(shared), -1);
        } else {
            llama_memory_seq_cp(mem, from, to, 0, at(shared));
        }
        dst.cache.assign(prompt.begin(), prompt.begin() + shared);
        return static_cast<int>(shared);
    }
    if (own > 0 && whole(seq) &&
        llama_memory_seq_rm(mem, static_cast<llama_seq_id>(seq), at(own), -1)) {
        dst.cache.resize(own);
        return static_cast<int>(own);
    }
    clear_seq(seq);  // partial removal refused (or nothing to reuse): recompute from scratch
    return 0;
}

void Engine::clear_seq(size_t seq) {
    llama_memory_seq_rm(llama_get_memory(ctx_.get()), static_cast<llama_seq_id>(seq), -1, -1);
    slots_[seq].cache.clear();
}

// Frees the cells of the least recently used idle cache; false when there is none.
bool Engine::drop_idle_cache() {
    Slot* lru = nullptr;
    for (Slot& s : slots_) {
        if (!s.active() && !s.cache.empty() && (lru == nullptr || s.last_used < lru->last_used)) lru = &s;
    }
    if (lru == nullptr) return false;
    clear_seq(static_cast<size_t>(lru - slots_.data()));
    return true;
}

// Idle caches are kept for the next turn of their conversation, but not at any price: a unified
// cache's attention spans every used cell up to the highest one (padded to 256), so each idle
// cell is visited by every decode step of every running sequence, and llama.cpp places new
// cells after the newest ones, so even a few kept caches hold the span up, and a running
// sequence pays for every idle cell in every step (docs/kv-cache.md measures it). So: past the
// budget (idle_cache, a share of the
// cells) the least recently used go first; while a single request runs, the idle cache used
// last is kept besides if it is long (a long system prompt or conversation that comes back with
// the next turn, after a chat UI's title request).
void Engine::trim_idle_caches() {
    if (params_.per_slot_kv) return;  // each stream is attended over by its own sequence only
    const auto budget = static_cast<size_t>(params_.idle_cache * static_cast<float>(llama_n_ctx(ctx_.get())));
    std::vector<Slot*> idle;
    size_t cells = 0;
    for (Slot& s : slots_) {
        if (!s.active() && !s.cache.empty()) {
            idle.push_back(&s);
            cells += s.cache.size();
        }
    }
    std::sort(idle.begin(), idle.end(), [](const Slot* a, const Slot* b) { return a->last_used < b->last_used; });
    constexpr size_t kLongCache = 512;  // recomputing it would take longer than its cells cost
    // So would a picture's or a clip's: its encoder pass alone outweighs hundreds of text tokens.
    const auto is_long = [](const Slot* s) {
        return s->cache.size() >= kLongCache || std::any_of(s->cache.begin(), s->cache.end(), is_placeholder);
    };
    if (busy_.load() < 2 && !idle.empty() && is_long(idle.back())) {
        cells -= idle.back()->cache.size();
        idle.pop_back();
    }
    for (Slot* lru : idle) {
        if (cells <= budget) return;
        cells -= lru->cache.size();
        clear_seq(static_cast<size_t>(lru - slots_.data()));
    }
}

// In a shared cache a step attends over every cell up to the highest one used, free or not
// (llama.cpp's n_kv). After a burst, the idle cache kept for the next turn can sit above the
// others' freed cells, and a request that takes a prefix from it shares its cells there: a short
// request that came next decoded at half speed (256 tokens of an answer after eight 900-token
// requests: 41 tok/s against 80 cold). Such sequences are copied down into the free cells (about
// 20 MB for 900 cells of a 135M model) while a gap above half of the used cells remains. A
// generating sequence's cells stay where they are: moving them would stall every stream.
void Engine::lower_high_cells() {
    if (params_.per_slot_kv) return;
    llama_memory_t mem = llama_get_memory(ctx_.get());
    constexpr size_t kGap = 256;  // llama.cpp pads the span to 256 cells: a smaller gap costs nothing
    const auto cell_end = [&](size_t seq) { return llama_memory_seq_cell_end(mem, static_cast<llama_seq_id>(seq)); };
    for (size_t moves = 0; moves < slots_.size(); ++moves) {
        const int32_t end = llama_memory_seq_cell_end(mem, -1);
        size_t used = 0;
        for (const Slot& s : slots_) used += s.cache.size();
        if (end < 0 || static_cast<size_t>(end) <= used + std::max(kGap, used / 2)) return;
        size_t top = slots_.size();
        for (size_t seq = 0; seq < slots_.size(); ++seq) {
            if (cell_end(seq) != end) continue;
            if (slots_[seq].state == SlotState::Generating) return;
            top = seq;
        }
        if (top == slots_.size()) return;
        if (!move_sequence_down(ctx_.get(), static_cast<llama_seq_id>(top))) {
            drop_cells(top);
        } else if (cell_end(top) >= end) {
            return;  // no free cells below
        }
    }
}

// A sequence whose cells could not be moved has none left: an idle cache is gone, and a prompt
// being computed starts again from its first token.
void Engine::drop_cells(size_t seq) {
    clear_seq(seq);
    Slot& slot = slots_[seq];
    if (slot.state != SlotState::Prefill) return;
    slot.n_prompt_done = 0;
    slot.next_media = 0;
    slot.media_embd.clear();
    slot.n_past = 0;
    slot.n_cached = 0;
}

void Engine::drain_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (Slot& slot : slots_) {
        if (slot.active()) finish(slot, Finish::Cancelled, "the engine shut down");
    }
    for (Pending& p : queue_) {
        Event ev;
        ev.id = p.id;
        ev.finish = Finish::Cancelled;
        ev.error = "the engine shut down";
        out_.push_back(std::move(ev));
    }
    queue_.clear();
}

int Engine::build_batch() {
    batch_.clear();
    std::vector<size_t> generating, prefill;
    for (size_t seq = 0; seq < slots_.size(); ++seq) {
        Slot& slot = slots_[seq];
        slot.logits_idx = -1;
        slot.n_in_batch = 0;
        slot.spec.draft.clear();
        slot.spec.draft_idx.clear();
        slot.spec.untried = -1;
        if (slot.state == SlotState::Generating) {
            generating.push_back(seq);
        } else if (slot.state == SlotState::Prefill) {
            prefill.push_back(seq);
        }
    }
    // A step that computes prompts is busy enough: drafts wait for one that only decodes.
    if (prefill.empty()) plan_drafts(generating);
    for (size_t seq : generating) {  // each slot's next token, then its draft
        Slot& slot = slots_[seq];
        const auto id = static_cast<llama_seq_id>(seq);
        slot.logits_idx = batch_.add(slot.pending, slot.n_past, id, true);
        for (size_t j = 0; j < slot.spec.draft.size(); ++j) {
            slot.spec.draft_idx.push_back(batch_.add(slot.spec.draft[j], slot.n_past + 1 + static_cast<int>(j), id, true));
        }
        slot.n_in_batch = 1 + static_cast<int>(slot.spec.draft.size());
    }
    // Prompt chunks fill what is left, oldest request first, so running streams never stall.
    std::sort(prefill.begin(), prefill.end(),
              [this](size_t a, size_t b) { return slots_[a].admitted < slots_[b].admitted; });
    int budget = params_.n_batch - batch_.size();
    for (size_t seq : prefill) {
        if (budget <= 0) break;
        Slot& slot = slots_[seq];
        const auto& prompt = slot.request.prompt;
        const int left = static_cast<int>(prompt.size() - slot.n_prompt_done);
        const int take = prompt_chunk(slot, budget);
        if (take == 0) continue;
        for (int i = 0; i < take; ++i) {
            const bool last = (i == left - 1);
            const int idx = batch_.add(prompt[slot.n_prompt_done + i], slot.n_past + i,
                                       static_cast<llama_seq_id>(seq), last);
            if (last) slot.logits_idx = idx;
        }
        slot.n_in_batch = take;
        budget -= take;
    }
    return batch_.size();
}

// How many of `slot`'s prompt tokens go into this step. The last one's logits start the answer,
// and a greedy answer must not depend on whether the prompt was cached, so that token is always
// computed the same way, cold or warm (where reuse_prefix leaves one or two tokens to compute):
// - in a long prompt, or on a GPU, alone in a step of its own, as it is when all the rest was
//   cached. That costs one decode step of time to first token.
// - in a short prompt on plain CPU weights, with at least the token before it, never alone in its
//   ubatch. The CPU's kernels for two or more columns give each column the same result whatever
//   the count (one column takes other kernels), until the step has kFewColumns tokens: from there
//   flash attention takes a tiled path that rounds differently (ggml_fa_tile_config::Q). The
//   prompt's length decides, which is the step's size on an idle server; under load other
//   sequences' tokens share the step and may still push it past that, as they may any step.
//   Repacked weights (AMX, interleaved layouts) run one kernel on groups of columns and another
//   on the rest, so they keep the step of its own too.
int Engine::prompt_chunk(const Slot& slot, int budget) const {
    const auto& media = slot.request.media;
    if (slot.next_media < media.size()) {  // the text up to the next media chunk (the prompt ends after it)
        const int to_media = static_cast<int>(media[slot.next_media].start - slot.n_prompt_done);
        return std::min({to_media, budget, params_.prefill_chunk});
    }
    const int left = static_cast<int>(slot.request.prompt.size() - slot.n_prompt_done);
    int take = std::min({left, budget, params_.prefill_chunk});
    if (!slot.last_with_rest) return take == left && left > 1 ? left - 1 : take;
    if (left - take == 1 && take > 1) --take;  // not one token alone in the next step
    const int n_ubatch = static_cast<int>(llama_n_ubatch(ctx_.get()));
    if (take == left && take > 2 && (batch_.size() + take) % n_ubatch == 1) take -= 2;  // nor in a ubatch
    return take;
}

void Engine::step() {
    media_step();
    if (!decode_batch()) return;
    Lap lap;
    steps_++;
    kv_span_.store(static_cast<uint64_t>(std::max(0, llama_memory_seq_cell_end(llama_get_memory(ctx_.get()), -1))));
    for (Slot& slot : slots_) {
        if (!slot.active() || slot.n_in_batch == 0) continue;
        slot.last_used = steps_.load();
        if (slot.state == SlotState::Generating) {  // its draft's cells are settled once it is sampled (settle_draft)
            slot.cache.push_back(slot.pending);
            slot.pending = -1;
            slot.n_past += 1;
        } else {
            const auto& prompt = slot.request.prompt;
            slot.cache.insert(slot.cache.end(), prompt.begin() + slot.n_prompt_done,
                              prompt.begin() + slot.n_prompt_done + slot.n_in_batch);
            slot.n_prompt_done += slot.n_in_batch;
            tokens_prompt_ += slot.n_in_batch;
            slot.n_past += slot.n_in_batch;
        }
    }
    lap.to(us_other_);
    sample_outputs();
    lap.to(us_sample_);
}

// The slot in prefill whose prompt has reached a media chunk, oldest admitted first, or null.
Engine::Slot* Engine::media_due() {
    Slot* due = nullptr;
    for (Slot& s : slots_) {
        if (s.state != SlotState::Prefill || s.next_media >= s.request.media.size()) continue;
        if (s.request.media[s.next_media].start != s.n_prompt_done) continue;
        if (due == nullptr || s.admitted < due->admitted) due = &s;
    }
    return due;
}

// One media chunk's work per step, beside the step's text batch: a step encodes the chunk, a
// later one decodes its embeddings into the slot's cells. So a running stream waits for one of
// them per step, as it waits for a prompt chunk, never for a whole picture's work at once.
void Engine::media_step() {
    Slot* slot = media_due();
    if (slot == nullptr) return;
    Lap lap;
    const MediaSpan& span = slot->request.media[slot->next_media];
    const auto seq = static_cast<llama_seq_id>(slot - slots_.data());
    if (slot->media_embd.empty()) {
        try {
            projector_->encode(*span.media, slot->media_embd);
        } catch (const std::exception& e) {
            finish(*slot, Finish::Error, e.what(), false);
            return;
        }
        media_encoded_++;
        lap.to(us_decode_);
        return;
    }
    llama_pos n_past = slot->n_past;
    int ret = projector_->decode(ctx_.get(), *span.media, slot->media_embd, slot->n_past, seq, params_.n_batch, &n_past);
    lap.to(us_decode_);
    if (ret != 0) {
        // A chunk decoded in several batches may have written some: none of it stays.
        llama_memory_seq_rm(llama_get_memory(ctx_.get()), seq, slot->n_past, -1);
        if (ret == 1 && drop_idle_cache()) return;  // room made: the next step tries again
        if (ret == 1) {
            finish(*slot, Finish::Length, "the KV cache is full", false);
        } else {
            finish(*slot, Finish::Error, "decoding the media chunk failed with code " + std::to_string(ret), false);
        }
        return;
    }
    const auto& prompt = slot->request.prompt;
    slot->cache.insert(slot->cache.end(), prompt.begin() + static_cast<long>(span.start),
                       prompt.begin() + static_cast<long>(span.end()));
    tokens_prompt_ += span.media->n_tokens;
    slot->n_prompt_done = span.end();
    slot->n_past = n_past;
    slot->next_media++;
    slot->media_embd = std::vector<float>();
    slot->last_used = steps_.load();
}

bool Engine::decode_batch() {
    Lap lap;
    while (build_batch() > 0) {
        lap.to(us_batch_);
        const auto decode_start = Clock::now();
        const int ret = llama_decode(ctx_.get(), batch_.get());
        // A lost RPC worker shows once the step's results are read: fail the step here, before a
        // token is sampled from logits that never arrived ("" without workers).
        const std::string lost = model_->check_workers(ctx_.get());
        lap.to(us_decode_);
        if (ret == 0 && lost.empty()) {
            const double us = std::chrono::duration<double, std::micro>(Clock::now() - decode_start).count();
            int n_seqs = 0, n_prompt = 0;
            for (const Slot& s : slots_) {
                n_seqs += s.n_in_batch > 0 ? 1 : 0;
                n_prompt += s.state == SlotState::Prefill ? s.n_in_batch : 0;
            }
            step_cost_.record(batch_.size(), n_seqs, n_prompt, us);
            return true;
        }
        if (ret == 1 && lost.empty()) {  // no room in the KV cache; nothing was written, so make room and retry
            if (!drop_idle_cache()) evict_newest("the KV cache is full");
            continue;
        }
        const std::string why = lost.empty() ? "llama_decode failed with code " + std::to_string(ret) : lost;
        for (Slot& slot : slots_) {
            if (slot.active() && slot.n_in_batch > 0) finish(slot, Finish::Error, why, false);
        }
        return false;
    }
    return false;
}

void Engine::evict_newest(const std::string& why) {
    Slot* newest = nullptr;
    for (Slot& slot : slots_) {
        if (slot.active() && (newest == nullptr || slot.admitted > newest->admitted)) newest = &slot;
    }
    if (newest != nullptr) finish(*newest, Finish::Length, why, /*keep_cache=*/false);
}

// Each slot's next token from its sampler; for a slot with a draft, the sampler then goes on
// through the draft's positions for as long as it picks the drafted token (mr/drafter.hpp says
// why this keeps the model's distribution). The kept draft tokens' cells stay, the rest go,
// before any token is emitted, so a request that ends here leaves a cache that matches its cells.
void Engine::sample_outputs() {
    for (Slot& slot : slots_) {
        if (!slot.active() || slot.logits_idx < 0) continue;
        std::vector<std::pair<llama_token, int>> sampled;  // token, batch output
        int idx = slot.logits_idx;
        slot.logits_idx = -1;
        sampled.emplace_back(slot.sampler->sample(ctx_.get(), idx), idx);
        const auto& draft = slot.spec.draft;
        size_t accepted = 0;
        while (accepted < draft.size() && sampled.back().first == draft[accepted]) {
            if (ends(slot, draft[accepted++])) break;  // kept, and the answer ends with it
            idx = slot.spec.draft_idx[accepted - 1];
            sampled.emplace_back(slot.sampler->sample(ctx_.get(), idx), idx);
        }
        if (!draft.empty()) {
            settle_draft(slot, accepted);
        } else if (slot.spec.untried >= 0) {
            record_acceptance(slot.spec, 1, sampled.front().first == slot.spec.untried ? 1 : 0);
            spec_checked_++;
        }
        for (const auto& [token, out] : sampled) {
            if (!emit_sampled(slot, token, out)) break;
        }
    }
}

bool Engine::ends(const Slot& slot, llama_token token) const {
    const auto& stops = slot.request.stop_tokens;
    return (!slot.request.ignore_eos && model_->is_eog(token)) ||
           std::find(stops.begin(), stops.end(), token) != stops.end();
}

// One sampled token to the request: a stop token ends it, any other is emitted. False when the
// request has ended.
bool Engine::emit_sampled(Slot& slot, llama_token token, int logits_idx) {
    if (slot.n_generated++ == 0) slot.first_token = Clock::now();
    tokens_generated_++;
    if (ends(slot, token)) {
        finish(slot, Finish::Stop);
        return false;
    }
    if (slot.spec.on) {
        slot.spec.history.append(token);
        slot.spec.prediction.advance(token);
    }
    emit_token(slot, token, logits_idx);
    return slot.active();
}

// The draft's first `accepted` tokens are the sequence's now; the cells of the rest are dropped.
void Engine::settle_draft(Slot& slot, size_t accepted) {
    Speculation& spec = slot.spec;
    const size_t seq = static_cast<size_t>(&slot - slots_.data());
    slot.cache.insert(slot.cache.end(), spec.draft.begin(), spec.draft.begin() + static_cast<long>(accepted));
    slot.n_past += static_cast<int>(accepted);
    if (accepted < spec.draft.size()) {
        llama_memory_seq_rm(llama_get_memory(ctx_.get()), static_cast<llama_seq_id>(seq), slot.n_past, -1);
    }
    const int drafted = static_cast<int>(spec.draft.size());
    const int kept = static_cast<int>(accepted);
    record_acceptance(spec, drafted, kept);
    spec.counts.drafted += drafted;
    spec.counts.accepted += kept;
    if (spec.from_prediction) {
        spec.counts.prediction_accepted += kept;
        spec.counts.prediction_rejected += drafted - kept;
    }
    spec_drafted_ += drafted;
    spec_accepted_ += kept;
}

// Drafts for this step's generating slots: each as long as it pays (EngineParams::spec), within
// the batch, the slot's context and its max_tokens.
void Engine::plan_drafts(const std::vector<size_t>& generating) {
    // What each slot could draft: its prediction or its own tokens, else the draft model, which
    // drafts for all such slots at once.
    std::vector<std::vector<llama_token>> proposals(generating.size());
    std::vector<DraftModel::Ask> asks;
    std::vector<size_t> ask_of;
    const int room0 = params_.n_batch - static_cast<int>(generating.size());
    for (size_t i = 0; i < generating.size(); ++i) {
        Slot& slot = slots_[generating[i]];
        const int k_max = slot.spec.on ? draft_room(slot, room0) : 0;
        if (k_max <= 0) continue;
        proposals[i] = propose(slot, k_max);
        // A draft model reads the slot's tokens: placeholders of pictures are none of its own.
        if (proposals[i].empty() && draft_ != nullptr && params_.spec != EngineParams::Spec::Off &&
            slot.request.media.empty()) {
            asks.push_back({static_cast<int>(generating[i]), &slot.spec.history.tokens(), k_max});
            ask_of.push_back(i);
        }
    }
    if (!asks.empty()) {
        try {
            auto drafted = draft_->draft(asks);
            for (size_t j = 0; j < asks.size(); ++j) proposals[ask_of[j]] = std::move(drafted[j]);
        } catch (const std::exception& e) {
            // Drafts only change the speed: a draft model that cannot decode is dropped, and the
            // requests go on without it (an exception here would end the engine thread).
            ggml_log_callback log = nullptr;
            void* user = nullptr;
            llama_log_get(&log, &user);  // llama.cpp's log, which mr routes to Python's logging
            const std::string line = std::string("the draft model failed (") + e.what() +
                                     "); decoding goes on without it\n";
            if (log != nullptr) log(GGML_LOG_LEVEL_WARN, line.c_str(), user);
            draft_.reset();
        }
    }
    // How much of each to take: as much as pays (EngineParams::spec), within the batch.
    const int n_tokens = static_cast<int>(generating.size());
    const int room = params_.n_batch - n_tokens;
    std::vector<int> k(generating.size(), 0);
    if (params_.spec == EngineParams::Spec::Ngram) {  // every draft found, while the batch has room
        int left = room;
        for (size_t i = 0; i < generating.size(); ++i) {
            k[i] = std::min(static_cast<int>(proposals[i].size()), left);
            left -= k[i];
        }
    } else {
        std::vector<int> k_max(generating.size());
        std::vector<const Acceptance*> acceptance(generating.size());
        for (size_t i = 0; i < generating.size(); ++i) {
            k_max[i] = std::min(static_cast<int>(proposals[i].size()), room);
            acceptance[i] = &acceptance_of(slots_[generating[i]].spec);
        }
        k = plan_draft_lengths(step_cost_, acceptance, k_max, n_tokens, room);
    }
    for (size_t i = 0; i < generating.size(); ++i) {
        if (k[i] == 0) {
            if (!proposals[i].empty()) slots_[generating[i]].spec.untried = proposals[i].front();
            continue;
        }
        proposals[i].resize(static_cast<size_t>(k[i]));
        slots_[generating[i]].spec.draft = std::move(proposals[i]);
    }
}

void Engine::record_acceptance(Speculation& spec, int drafted, int kept) {
    acceptance_of(spec).record(drafted, kept);
    if (!spec.long_match || spec.from_prediction) return;
    Acceptance& engine = spec.recalled ? recall_acceptance_ : long_acceptance_;
    engine.record(drafted, kept);
    (spec.recalled ? spec_recall_rate_ : spec_copy_rate_) = engine.rate();
}

Acceptance& Engine::acceptance_of(Speculation& spec) {
    if (!spec.long_match || spec.from_prediction) return spec.acceptance;
    return spec.recalled ? spec.recall_acceptance : spec.long_acceptance;
}

// The longest draft `slot` may take: spec_max, the batch's room, its context (two cells spare:
// the last kept token must still have a cell to be decoded into) and its max_tokens.
int Engine::draft_room(const Slot& slot, int room) const {
    const int left = slot.request.max_tokens > 0 ? slot.request.max_tokens - slot.n_generated : kMaxDraft + 1;
    return std::min({params_.spec_max, room, n_ctx_seq_ - static_cast<int>(slot.cache.size()) - 2, left - 1});
}

// The request's prediction first (the client asked for it), then the slot's own tokens, unless
// there is a draft model: then it drafts (plan_drafts asks it for all slots at once).
std::vector<llama_token> Engine::propose(Slot& slot, int k_max) {
    Speculation& spec = slot.spec;
    spec.long_match = false;
    spec.recalled = false;
    if (!spec.prediction.empty()) {
        std::vector<llama_token> draft = spec.prediction.draft(spec.history.tokens(), k_max);
        spec.from_prediction = !draft.empty();
        if (!draft.empty()) return draft;
    }
    spec.from_prediction = false;
    if (params_.spec == EngineParams::Spec::Off || draft_ != nullptr) return {};
    int matched = 0;
    std::vector<llama_token> draft = spec.history.continuation(k_max, &matched);
    if (matched < NgramIndex::kLongMatch) {  // another request's text, where this one repeats it
        std::vector<const NgramIndex*> sources;
        for (const Slot& other : slots_) {  // running, or idle with its last request
            if (&other != &slot && !other.spec.history.tokens().empty()) sources.push_back(&other.spec.history);
        }
        memory_.sources(sources);
        int recalled = 0;
        std::vector<llama_token> earlier = recall(sources, spec.history.tokens(), k_max, &recalled);
        if (recalled >= NgramIndex::kLongMatch) {
            draft = std::move(earlier);
            matched = recalled;
            spec.recalled = true;
        }
    }
    draft.erase(std::find_if(draft.begin(), draft.end(), is_placeholder), draft.end());  // no picture is a token
    // A long match is a text being copied: its draft may run long (ngram-mod's insight in
    // llama-server: 24 matching tokens, 48-64 drafted); a short one is a guess.
    spec.long_match = matched >= NgramIndex::kLongMatch;
    if (!spec.long_match && static_cast<int>(draft.size()) > kShortDraft) draft.resize(kShortDraft);
    return draft;
}

void Engine::emit_token(Slot& slot, llama_token token, int logits_idx) {
    Event ev;
    ev.id = slot.id;
    ev.token = token;
    std::string piece = model_->token_to_piece(token, false);
    std::string text = slot.text.feed(piece);
    ev.n_prompt = static_cast<int>(slot.request.prompt.size());
    ev.n_generated = slot.n_generated;
    ev.n_cached = slot.n_cached;
    if (slot.request.n_logprobs >= 0) {
        add_logprobs(ev, logits_idx, slot.request.n_logprobs);
        ev.piece = std::move(piece);
    }
    if (slot.text.stopped()) {  // a stop string: the slot is free at once, not after a cancel
        ev.finish = Finish::Stop;
        ev.stop_index = slot.text.matched();
    } else if (slot.request.max_tokens > 0 && slot.n_generated >= slot.request.max_tokens) {
        ev.finish = Finish::Length;
    } else if (static_cast<int>(slot.cache.size()) >= n_ctx_seq_) {  // no cell left to decode this token into
        ev.finish = Finish::Length;
    }
    if (ev.finish == Finish::Length) text += slot.text.flush(/*cut=*/true);
    add_text(ev, slot, std::move(text));
    const bool finished = ev.finish != Finish::None;
    if (finished) add_finish_info(ev, slot);
    emit(slot, std::move(ev));
    if (finished) {
        release(slot, true);
    } else {
        slot.pending = token;
        slot.state = SlotState::Generating;
    }
}

// An event of a running request: published, or with a wire, its frame sent (or held) by the
// engine and nothing published unless the request ends or the wire gives the frame back.
void Engine::emit(Slot& slot, Event ev) {
    WireWriter* wire = slot.wire.get();
    if (wire == nullptr) {
        out_.push_back(std::move(ev));
        return;
    }
    const bool finished = ev.finish != Finish::None;
    if (finished && wire->state() == WireWriter::State::Held) {
        bool rest = false;  // ended before the server decided: its frames go back, in order
        publish_frames(ev.id, wire->decide(false, rest), rest);
    }
    bool rest = false;
    if (!ev.frame.empty() && !wire->take(ev.frame, rest) && rest) {
        publish_frames(ev.id, {std::move(ev.frame)}, true);
        ev.frame.clear();
    }
    if (finished) {
        ev.has_wire = true;
        ev.wire_times = wire->times();
        ev.wire_log = wire->log();
        ev.wire_bytes = wire->bytes();
    } else if (ev.frame.empty() && !ev.has_logprob) {
        return;  // sent or held: the server has nothing to do for this token
    }
    out_.push_back(std::move(ev));
}

void Engine::add_text(Event& ev, const Slot& slot, std::string text) {
    if (!text.empty() && !slot.request.frame.empty()) ev.frame = slot.request.frame.render(text);
    ev.text = std::move(text);
}

// log-softmax of the raw logits: the model's own distribution, before any sampler touched it.
void Engine::add_logprobs(Event& ev, int logits_idx, int n_top) const {
    const float* logits = llama_get_logits_ith(ctx_.get(), logits_idx);
    const int n_vocab = model_->n_vocab();
    const float max = *std::max_element(logits, logits + n_vocab);
    double sum = 0.0;
    for (int i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max));
    const float log_z = max + static_cast<float>(std::log(sum));
    ev.has_logprob = true;
    ev.logprob = logits[ev.token] - log_z;
    if (n_top <= 0) return;
    std::vector<llama_token> ids(n_vocab);
    for (int i = 0; i < n_vocab; ++i) ids[i] = i;
    const int k = std::min(n_top, n_vocab);
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                      [logits](llama_token a, llama_token b) { return logits[a] > logits[b]; });
    ev.top.reserve(k);
    for (int i = 0; i < k; ++i) ev.top.emplace_back(ids[i], logits[ids[i]] - log_z);
}

void Engine::finish(Slot& slot, Finish reason, std::string error, bool keep_cache) {
    Event ev;
    ev.id = slot.id;
    ev.finish = reason;
    ev.n_prompt = static_cast<int>(slot.request.prompt.size());
    ev.n_generated = slot.n_generated;
    ev.n_cached = slot.n_cached;
    // A natural end (end of generation, a stop token) emits what was held back for stop strings;
    // an answer cut short or cancelled does not: the consumer is told it is incomplete.
    if (reason == Finish::Stop && error.empty()) add_text(ev, slot, slot.text.flush());
    ev.error = std::move(error);
    add_finish_info(ev, slot);
    emit(slot, std::move(ev));
    release(slot, keep_cache);
}

void Engine::add_finish_info(Event& ev, const Slot& slot) {
    ev.spec = slot.spec.counts;
    using ms = std::chrono::duration<float, std::milli>;
    const auto now = Clock::now();
    const auto first = slot.first_token == Clock::time_point{} ? now : slot.first_token;
    ev.queue_ms = ms(slot.admitted_at - slot.submitted).count();
    ev.prefill_ms = ms(first - slot.admitted_at).count();
    ev.decode_ms = ms(now - first).count();
}

// The request leaves its slot. Its cells stay as a cache that a later prompt with the same
// prefix reuses; they are dropped when the KV cache needs the room.
void Engine::release(Slot& slot, bool keep_cache) {
    if (!keep_cache) clear_seq(static_cast<size_t>(&slot - slots_.data()));
    slot.state = SlotState::Idle;
    slot.sampler.reset();
    slot.wire.reset();  // closes the engine's copy of the socket
    slot.pending = -1;
    slot.n_in_batch = 0;
    slot.logits_idx = -1;
    slot.request.media.clear();  // the chunks hold preprocessed pixels; the cache keeps placeholders
    slot.media_embd = std::vector<float>();
    slot_ids_[static_cast<size_t>(&slot - slots_.data())].store(0);
    busy_--;
    finished_++;
}

void Engine::publish() {
    if (out_.empty()) return;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (events_.empty()) {
            events_.swap(out_);
        } else {
            events_.insert(events_.end(), std::make_move_iterator(out_.begin()),
                           std::make_move_iterator(out_.end()));
            out_.clear();
        }
    }
    events_cv_.notify_all();
    notifier_.notify();
}

}  // namespace mr
