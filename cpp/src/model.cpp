#include "mr/model.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>

#include "gguf.h"
#include "mr/errors.hpp"
#include "mr/log.hpp"

namespace mr {
namespace {

// Error messages name the file, never its absolute path (they may reach HTTP clients).
std::string display_name(const std::string& path) {
    return std::filesystem::path(path).filename().string();
}

std::string trimmed(std::string line) {
    while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
    return line;
}

void check_gguf_file(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::exists(path, ec)) {
        throw ModelLoadError("model file not found: " + display_name(path));
    }
    if (!fs::is_regular_file(path, ec)) {
        throw ModelLoadError("not a regular file: " + display_name(path));
    }
    std::ifstream in(path, std::ios::binary);
    std::array<char, 4> magic{};
    if (!in.read(magic.data(), magic.size()) || std::string(magic.data(), 4) != "GGUF") {
        throw ModelLoadError("not a GGUF file (bad magic): " + display_name(path));
    }
}

// llama.cpp names the buffers that hold the weights only in its load log:
// "load_tensors:          AMX model buffer size =    53.44 MiB".
std::vector<WeightBuffer> parse_weight_buffers(const std::vector<std::string>& lines) {
    static const std::regex re(R"((\S+) model buffer size\s*=\s*([0-9.]+) MiB)");
    std::vector<WeightBuffer> out;
    for (const auto& line : lines) {
        std::smatch m;
        if (std::regex_search(line, m, re)) out.push_back({m[1].str(), std::stod(m[2].str())});
    }
    return out;
}

// "load_tensors: layer  12 assigned to device RPC0, is_swa = 0" (llama.cpp's debug log) for each
// repeating layer, then once more for the output layer.
std::vector<Placement> parse_placement(const std::vector<std::string>& lines, const rpc::Workers* workers) {
    static const std::regex re(R"(layer\s+(\d+) assigned to device ([^,\s]+))");
    std::vector<Placement> out;
    auto entry = [&](const std::string& device) -> Placement& {
        for (auto& p : out) {
            if (p.device == device) return p;
        }
        out.push_back({device, workers ? workers->endpoint_of(device) : "", 0, false});
        return out.back();
    };
    for (size_t i = 0; i < lines.size(); ++i) {
        std::smatch m;
        if (!std::regex_search(lines[i], m, re)) continue;
        Placement& p = entry(m[2].str());
        if (i + 1 == lines.size()) {
            p.output = true;
        } else {
            p.layers++;
        }
    }
    return out;
}

// The model's layer count from its GGUF header, before llama.cpp loads it: the split over the
// RPC workers depends on it.
int block_count(const std::string& path) {
    gguf_init_params gp{};
    gp.no_alloc = true;
    std::unique_ptr<gguf_context, decltype(&gguf_free)> g(gguf_init_from_file(path.c_str(), gp), gguf_free);
    if (!g) throw ModelLoadError("llama.cpp could not read the GGUF header of " + display_name(path));
    const int64_t arch = gguf_find_key(g.get(), "general.architecture");
    const std::string key = std::string(arch < 0 ? "llama" : gguf_get_val_str(g.get(), arch)) + ".block_count";
    const int64_t id = gguf_find_key(g.get(), key.c_str());
    if (id < 0) throw ModelLoadError(display_name(path) + " has no " + key);
    switch (gguf_get_kv_type(g.get(), id)) {
        case GGUF_TYPE_UINT32: return static_cast<int>(gguf_get_val_u32(g.get(), id));
        case GGUF_TYPE_INT32: return gguf_get_val_i32(g.get(), id);
        case GGUF_TYPE_UINT64: return static_cast<int>(gguf_get_val_u64(g.get(), id));
        default: throw ModelLoadError(display_name(path) + ": " + key + " is not an integer");
    }
}

}  // namespace

void init_backend() {
    static std::once_flag once;
    std::call_once(once, [] { llama_backend_init(); });
}

std::string system_info() {
    init_backend();
    return llama_print_system_info();
}

Model::Model(std::unique_ptr<rpc::Workers> workers, std::unique_ptr<llama_model, ModelDeleter> model,
             std::string path, std::vector<WeightBuffer> weight_buffers, std::vector<Placement> placement)
    : workers_(std::move(workers)), model_(std::move(model)), vocab_(llama_model_get_vocab(model_.get())),
      path_(std::move(path)), weight_buffers_(std::move(weight_buffers)), placement_(std::move(placement)) {}

bool Model::no_gpu() {
    for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {  // it may take a large batch's work
        const auto type = ggml_backend_dev_type(ggml_backend_dev_get(i));
        if (type == GGML_BACKEND_DEVICE_TYPE_GPU || type == GGML_BACKEND_DEVICE_TYPE_IGPU) return false;
    }
    return true;
}

bool Model::plain_cpu_weights() const {
    if (workers_ != nullptr || weight_buffers_.empty() || !no_gpu()) return false;
    return std::all_of(weight_buffers_.begin(), weight_buffers_.end(),
                       [](const WeightBuffer& b) { return b.name == "CPU" || b.name == "CPU_Mapped"; });
}

std::shared_ptr<Model> Model::load(const ModelParams& params) {
    init_backend();
    check_gguf_file(params.path);
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = params.n_gpu_layers < 0 ? 999 : params.n_gpu_layers;
    mp.load_mode = params.use_mmap ? LLAMA_LOAD_MODE_MMAP : LLAMA_LOAD_MODE_NONE;
    mp.use_extra_bufts = params.repack;
    std::unique_ptr<rpc::Workers> workers;
    rpc::Split split;
    if (!params.rpc_workers.empty()) {
        workers = std::make_unique<rpc::Workers>(params.rpc_workers);
        split = rpc::plan_split(*workers, block_count(params.path), params.n_gpu_layers);
        mp.devices = split.devices.data();
        mp.tensor_split = split.tensor_split.data();
        mp.n_gpu_layers = split.n_gpu_layers;
    }
    log::take_last_error();
    log::Capture layers("assigned to device");
    log::Capture buffers("model buffer size");
    log::Capture refused("refused a buffer");  // a worker's --mem (vendor/patches/0002-*)
    llama_model* raw = llama_model_load_from_file(params.path.c_str(), mp);
    std::unique_ptr<llama_model, ModelDeleter> owned(raw);
    const std::string lost = workers ? workers->lost() : "";
    if (raw == nullptr || !lost.empty()) {  // a worker lost during the load left zeros behind
        // llama.cpp's own last words ("failed to load model") name neither the worker nor the size
        std::string why = !lost.empty() ? lost : refused.lines().empty() ? log::take_last_error()
                                                                         : trimmed(refused.lines().front());
        throw ModelLoadError("llama.cpp could not load " + display_name(params.path) +
                             (why.empty() ? "" : ": " + why));
    }
    if (llama_model_get_vocab(raw) == nullptr || llama_vocab_n_tokens(llama_model_get_vocab(raw)) <= 0) {
        throw ModelLoadError("model has no vocabulary: " + display_name(params.path));
    }
    auto placement = parse_placement(layers.lines(), workers.get());
    return std::shared_ptr<Model>(new Model(std::move(workers), std::move(owned), params.path,
                                            parse_weight_buffers(buffers.lines()), std::move(placement)));
}

std::vector<rpc::WorkerDevice> Model::workers() const {
    return workers_ ? workers_->devices() : std::vector<rpc::WorkerDevice>{};
}

std::string Model::lost_worker() const { return workers_ ? workers_->lost() : ""; }

std::string Model::check_workers(llama_context* ctx) const {
    if (!workers_) return {};
    llama_synchronize(ctx);
    return workers_->lost();
}

std::string Model::meta_value(const char* key) const {
    std::vector<char> buf(256);
    int32_t n = llama_model_meta_val_str(model_.get(), key, buf.data(), buf.size());
    if (n < 0) return "";
    if (static_cast<size_t>(n) >= buf.size()) {
        buf.resize(n + 1);
        llama_model_meta_val_str(model_.get(), key, buf.data(), buf.size());
    }
    return std::string(buf.data(), n);
}

std::map<std::string, std::string> Model::metadata() const {
    std::map<std::string, std::string> out;
    const int32_t count = llama_model_meta_count(model_.get());
    std::vector<char> key(512), val(1024);
    for (int32_t i = 0; i < count; ++i) {
        int32_t nk = llama_model_meta_key_by_index(model_.get(), i, key.data(), key.size());
        if (nk < 0) continue;
        if (static_cast<size_t>(nk) >= key.size()) {
            key.resize(nk + 1);
            llama_model_meta_key_by_index(model_.get(), i, key.data(), key.size());
        }
        int32_t nv = llama_model_meta_val_str_by_index(model_.get(), i, val.data(), val.size());
        if (nv < 0) continue;
        if (static_cast<size_t>(nv) >= val.size()) {
            val.resize(nv + 1);
            llama_model_meta_val_str_by_index(model_.get(), i, val.data(), val.size());
        }
        out.emplace(std::string(key.data(), nk), std::string(val.data(), nv));
    }
    return out;
}

std::string Model::description() const {
    std::array<char, 256> buf{};
    llama_model_desc(model_.get(), buf.data(), buf.size());
    return buf.data();
}

std::string Model::architecture() const { return meta_value("general.architecture"); }

std::string Model::chat_template() const {
    const char* tmpl = llama_model_chat_template(model_.get(), nullptr);
    return tmpl ? tmpl : "";
}

void Model::check_token(llama_token token) const {
    if (token < 0 || token >= n_vocab()) {
        throw InvalidArgument("token id " + std::to_string(token) + " is out of range [0, " +
                              std::to_string(n_vocab()) + ")");
    }
}

std::vector<llama_token> Model::tokenize(const std::string& text, bool add_special, bool parse_special) const {
    const int32_t len = static_cast<int32_t>(text.size());
    std::vector<llama_token> tokens(text.size() + 2 + (add_special ? 2 : 0));
    int32_t n = llama_tokenize(vocab_, text.data(), len, tokens.data(), tokens.size(), add_special, parse_special);
    if (n < 0) {  // buffer too small: -n is the exact size
        tokens.resize(-n);
        n = llama_tokenize(vocab_, text.data(), len, tokens.data(), tokens.size(), add_special, parse_special);
    }
    if (n < 0) {
        throw InvalidArgument("text could not be tokenized");
    }
    tokens.resize(n);
    return tokens;
}

std::string Model::detokenize(const std::vector<llama_token>& tokens, bool remove_special, bool unparse_special) const {
    for (llama_token t : tokens) check_token(t);
    std::string out(tokens.size() * 8 + 16, '\0');
    int32_t n = llama_detokenize(vocab_, tokens.data(), tokens.size(), out.data(), out.size(), remove_special, unparse_special);
    if (n < 0) {
        out.resize(-n);
        n = llama_detokenize(vocab_, tokens.data(), tokens.size(), out.data(), out.size(), remove_special, unparse_special);
    }
    out.resize(n < 0 ? 0 : n);
    return out;
}

std::string Model::token_to_piece(llama_token token, bool special) const {
    check_token(token);
    std::array<char, 64> small{};
    int32_t n = llama_token_to_piece(vocab_, token, small.data(), small.size(), 0, special);
    if (n >= 0) return std::string(small.data(), n);
    std::string big(-n, '\0');
    n = llama_token_to_piece(vocab_, token, big.data(), big.size(), 0, special);
    big.resize(n < 0 ? 0 : n);
    return big;
}

std::vector<llama_token> Model::eog_tokens() const {
    std::vector<llama_token> out;
    for (llama_token t = 0; t < n_vocab(); ++t) {
        if (llama_vocab_is_eog(vocab_, t)) out.push_back(t);
    }
    return out;
}

}  // namespace mr
