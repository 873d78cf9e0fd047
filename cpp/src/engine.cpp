#include "mr/engine.hpp"

#include <algorithm>
#include <chrono>

#include "mr/errors.hpp"
#include "mr/model.hpp"

namespace mr {
namespace {

constexpr int kMaxSlots = 256;  // llama.cpp's LLAMA_MAX_SEQ

void validate(const EngineParams& p) {
    if (p.n_ctx <= 0) throw InvalidArgument("n_ctx must be > 0, got " + std::to_string(p.n_ctx));
    if (p.n_slots < 1 || p.n_slots > kMaxSlots) {
        throw InvalidArgument("n_slots must be in [1, " + std::to_string(kMaxSlots) + "]");
    }
    if (p.n_batch < 1) throw InvalidArgument("n_batch must be > 0");
    if (p.n_ubatch < 1) throw InvalidArgument("n_ubatch must be > 0");
    if (p.n_threads < 0 || p.n_threads_batch < 0) throw InvalidArgument("thread counts must be >= 0");
    if (p.max_queue < 0) throw InvalidArgument("max_queue must be >= 0");
    if (p.prefill_chunk < 0) throw InvalidArgument("prefill_chunk must be >= 0");
}

llama_context_params context_params(const EngineParams& p) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = p.n_ctx;
    cp.n_seq_max = p.n_slots;
    cp.n_batch = p.n_batch;
    cp.n_ubatch = std::min(p.n_ubatch, p.n_batch);
    cp.n_threads = p.n_threads > 0 ? p.n_threads : default_threads();
    cp.n_threads_batch = p.n_threads_batch > 0 ? p.n_threads_batch : cp.n_threads;
    cp.kv_unified = true;  // one cache shared by all slots: a prefix can be shared without copies
    cp.no_perf = true;
    return cp;
}

}  // namespace

Engine::Engine(std::shared_ptr<Model> model, const EngineParams& params)
    : model_(std::move(model)), params_((validate(params), params)),
      ctx_(make_context(*model_, context_params(params_))),
      n_ctx_seq_(static_cast<int>(llama_n_ctx_seq(ctx_.get()))),
      batch_(params_.n_batch + params_.n_slots, 1),
      slots_(params_.n_slots) {
    if (params_.prefill_chunk == 0) params_.prefill_chunk = params_.n_batch;
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
    for (llama_token t : request.prompt) model_->check_token(t);
    for (llama_token t : request.stop_tokens) model_->check_token(t);
    if (request.max_tokens == 0 || request.max_tokens < -1) {
        throw InvalidArgument("max_tokens must be >= 1 (or -1 for no limit)");
    }
    const int n_prompt = static_cast<int>(request.prompt.size());
    const int need = n_prompt + std::max(request.max_tokens, 1);
    if (need > n_ctx_seq_) throw ContextOverflow(need, n_ctx_seq_);
    auto sampler = std::make_unique<Sampler>(*model_, request.sampling);  // validates sampling

    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) throw Error("the engine is shut down");
    if (static_cast<int>(queue_.size()) >= params_.max_queue + std::max(0, params_.n_slots - busy_.load())) {
        throw Overloaded("the request queue is full (" + std::to_string(params_.max_queue) + " waiting)");
    }
    const uint64_t id = next_id_++;
    queue_.push_back(Pending{id, std::move(request), std::move(sampler)});
    work_cv_.notify_one();
    return id;
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
    return s;
}

// ---- engine thread ----

void Engine::run() {
    while (wait_for_work()) {
        step();
        publish();
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
    work_cv_.wait(lock, [this] {
        return stopping_ || !queue_.empty() || !cancels_.empty() || busy_.load() > 0;
    });
    if (stopping_) return false;
    apply_cancels();
    admit();
    return true;
}

void Engine::apply_cancels() {
    for (Slot& slot : slots_) {
        if (slot.active && cancels_.count(slot.id)) finish(slot, Finish::Cancelled);
    }
    cancels_.clear();  // ids of finished or unknown requests are simply dropped
}

void Engine::admit() {
    for (size_t seq = 0; seq < slots_.size() && !queue_.empty(); ++seq) {
        Slot& slot = slots_[seq];
        if (slot.active) continue;
        Pending p = std::move(queue_.front());
        queue_.pop_front();
        llama_memory_seq_rm(llama_get_memory(ctx_.get()), static_cast<llama_seq_id>(seq), -1, -1);
        slot = Slot{};
        slot.active = true;
        slot.id = p.id;
        slot.admitted = ++admissions_;
        slot.request = std::move(p.request);
        slot.sampler = std::move(p.sampler);
        busy_++;
    }
}

void Engine::drain_all() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (Slot& slot : slots_) {
        if (slot.active) finish(slot, Finish::Cancelled, "the engine shut down");
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
    for (size_t seq = 0; seq < slots_.size(); ++seq) {
        Slot& slot = slots_[seq];
        slot.logits_idx = -1;
        slot.n_in_batch = 0;
        if (slot.active && slot.pending >= 0) {
            slot.logits_idx = batch_.add(slot.pending, slot.n_past, static_cast<llama_seq_id>(seq), true);
            slot.n_in_batch = 1;
        }
    }
    // Prompt chunks fill what is left, oldest request first, so running streams never stall.
    std::vector<size_t> prefill;
    for (size_t seq = 0; seq < slots_.size(); ++seq) {
        const Slot& slot = slots_[seq];
        if (slot.active && slot.pending < 0 && slot.n_prompt_done < slot.request.prompt.size()) prefill.push_back(seq);
    }
    std::sort(prefill.begin(), prefill.end(),
              [this](size_t a, size_t b) { return slots_[a].admitted < slots_[b].admitted; });
    int budget = params_.n_batch - batch_.size();
    for (size_t seq : prefill) {
        if (budget <= 0) break;
        Slot& slot = slots_[seq];
        const auto& prompt = slot.request.prompt;
        const int left = static_cast<int>(prompt.size() - slot.n_prompt_done);
        const int take = std::min({left, budget, params_.prefill_chunk});
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

void Engine::step() {
    if (!decode_batch()) return;
    steps_++;
    for (Slot& slot : slots_) {
        if (!slot.active || slot.n_in_batch == 0) continue;
        if (slot.pending >= 0) {
            slot.pending = -1;
        } else {
            slot.n_prompt_done += slot.n_in_batch;
            tokens_prompt_ += slot.n_in_batch;
        }
        slot.n_past += slot.n_in_batch;
    }
    sample_outputs();
}

bool Engine::decode_batch() {
    while (build_batch() > 0) {
        const int ret = llama_decode(ctx_.get(), batch_.get());
        if (ret == 0) return true;
        if (ret == 1) {  // no room in the KV cache: nothing was written, so drop one request and retry
            evict_newest("the KV cache is full");
            continue;
        }
        for (Slot& slot : slots_) {
            if (slot.active && slot.n_in_batch > 0) {
                finish(slot, Finish::Error, "llama_decode failed with code " + std::to_string(ret));
            }
        }
        return false;
    }
    return false;
}

void Engine::evict_newest(const std::string& why) {
    Slot* newest = nullptr;
    for (Slot& slot : slots_) {
        if (slot.active && (newest == nullptr || slot.admitted > newest->admitted)) newest = &slot;
    }
    if (newest != nullptr) finish(*newest, Finish::Length, why);
}

void Engine::sample_outputs() {
    for (Slot& slot : slots_) {
        if (!slot.active || slot.logits_idx < 0) continue;
        const llama_token token = slot.sampler->sample(ctx_.get(), slot.logits_idx);
        slot.logits_idx = -1;
        slot.n_generated++;
        tokens_generated_++;
        const auto& stops = slot.request.stop_tokens;
        if ((!slot.request.ignore_eos && model_->is_eog(token)) ||
            std::find(stops.begin(), stops.end(), token) != stops.end()) {
            finish(slot, Finish::Stop);
            continue;
        }
        emit_token(slot, token);
    }
}

void Engine::emit_token(Slot& slot, llama_token token) {
    Event ev;
    ev.id = slot.id;
    ev.token = token;
    ev.piece = model_->token_to_piece(token, false);
    ev.n_prompt = static_cast<int>(slot.request.prompt.size());
    ev.n_generated = slot.n_generated;
    if (slot.request.max_tokens > 0 && slot.n_generated >= slot.request.max_tokens) {
        ev.finish = Finish::Length;
    } else if (slot.n_past >= n_ctx_seq_) {  // no cell left to decode this token into
        ev.finish = Finish::Length;
    }
    out_.push_back(std::move(ev));
    if (out_.back().finish != Finish::None) {
        release(slot);
    } else {
        slot.pending = token;
    }
}

void Engine::finish(Slot& slot, Finish reason, std::string error) {
    Event ev;
    ev.id = slot.id;
    ev.finish = reason;
    ev.n_prompt = static_cast<int>(slot.request.prompt.size());
    ev.n_generated = slot.n_generated;
    ev.error = std::move(error);
    out_.push_back(std::move(ev));
    release(slot);
}

void Engine::release(Slot& slot) {
    const auto seq = static_cast<llama_seq_id>(&slot - slots_.data());
    llama_memory_seq_rm(llama_get_memory(ctx_.get()), seq, -1, -1);
    slot.active = false;
    slot.sampler.reset();
    slot.pending = -1;
    slot.n_in_batch = 0;
    slot.logits_idx = -1;
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
