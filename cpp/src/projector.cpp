#include "mr/projector.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <thread>

#include "mr/errors.hpp"
#include "mr/log.hpp"
#include "mr/model.hpp"
#include "mtmd-helper.h"

namespace mr {
namespace {

struct ChunksFree {
    void operator()(mtmd_input_chunks* c) const { mtmd_input_chunks_free(c); }
};

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
    return h;
}

std::string file_name(const std::string& path) { return std::filesystem::path(path).filename().string(); }

}  // namespace

Bitmap Bitmap::image(uint32_t width, uint32_t height, const unsigned char* rgb, size_t n_bytes,
                     const std::string& digest) {
    if (width == 0 || height == 0 || n_bytes != static_cast<size_t>(width) * height * 3) {
        throw InvalidArgument("an image needs width * height * 3 bytes of RGB");
    }
    Bitmap b(mtmd_bitmap_init(width, height, rgb), digest);
    mtmd_bitmap_set_id(b.bitmap_.get(), digest.c_str());
    return b;
}

Bitmap Bitmap::audio(const float* samples, size_t n_samples, const std::string& digest) {
    if (n_samples == 0) throw InvalidArgument("an audio clip needs samples");
    Bitmap b(mtmd_bitmap_init_from_audio(n_samples, samples), digest);
    mtmd_bitmap_set_id(b.bitmap_.get(), digest.c_str());
    return b;
}

llama_token media_placeholder(const std::string& digest, size_t index) {
    const uint64_t h = mix(fnv1a(digest) + mix(index + 1));
    return -3 - static_cast<llama_token>(h & 0x3fffffffULL);
}

size_t whole_media_prefix(const std::vector<MediaSpan>& spans, size_t n) {
    for (const MediaSpan& s : spans) {
        if (s.start < n && n < s.end()) return s.start;
    }
    return n;
}

llama_pos position_of(const std::vector<MediaSpan>& spans, size_t n) {
    auto pos = static_cast<llama_pos>(n);
    for (const MediaSpan& s : spans) {
        if (s.end() <= n) pos -= static_cast<llama_pos>(s.media->n_tokens) - s.media->n_pos;
    }
    return pos;
}

Projector::Projector(std::shared_ptr<Model> model, const std::string& path, int n_threads, bool use_gpu)
    : model_(std::move(model)), path_(path) {
    if (!std::filesystem::is_regular_file(path)) {
        throw ModelLoadError("multimodal projector not found: " + file_name(path));
    }
    mtmd_context_params p = mtmd_context_params_default();
    p.use_gpu = use_gpu;
    p.print_timings = false;
    p.n_threads = n_threads > 0 ? n_threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    log::take_last_error();
    ctx_.reset(mtmd_init_from_file(path.c_str(), model_->get(), p));
    if (!ctx_) {
        std::string why = log::take_last_error();
        throw ModelLoadError("could not load the multimodal projector " + file_name(path) +
                             (why.empty() ? std::string() : ": " + why));
    }
}

void Projector::build(const std::vector<std::vector<llama_token>>& segments, const std::vector<Bitmap>& bitmaps,
                      std::vector<llama_token>& prompt, std::vector<MediaSpan>& spans) const {
    if (segments.size() != bitmaps.size() + 1) {
        throw InvalidArgument("a media prompt needs one more text segment than media items");
    }
    const char* marker = mtmd_get_marker(ctx_.get());
    for (size_t i = 0; i < segments.size(); ++i) {
        prompt.insert(prompt.end(), segments[i].begin(), segments[i].end());
        if (i == bitmaps.size()) break;
        const Bitmap& bitmap = bitmaps[i];
        if (bitmap.is_audio() ? !audio() : !vision()) {
            throw InvalidArgument(std::string("this model's projector takes no ") +
                                  (bitmap.is_audio() ? "audio" : "images"));
        }
        // A lone marker: mtmd returns the model's wrapping tokens around the media chunk(s)
        // (slices of a large image come with the text between them).
        std::unique_ptr<mtmd_input_chunks, ChunksFree> chunks(mtmd_input_chunks_init());
        const mtmd_input_text text{marker, std::strlen(marker), false, true};
        const mtmd_bitmap* raw = bitmap.get();
        if (const int ret = mtmd_tokenize(ctx_.get(), chunks.get(), &text, &raw, 1); ret != 0) {
            throw InvalidArgument("the " + std::string(bitmap.is_audio() ? "audio clip" : "image") +
                                  " could not be prepared for this model (mtmd_tokenize: " + std::to_string(ret) + ")");
        }
        size_t index = 0;
        for (size_t c = 0; c < mtmd_input_chunks_size(chunks.get()); ++c) {
            const mtmd_input_chunk* chunk = mtmd_input_chunks_get(chunks.get(), c);
            const auto type = mtmd_input_chunk_get_type(chunk);
            if (type == MTMD_INPUT_CHUNK_TYPE_TEXT) {
                size_t n = 0;
                const llama_token* tokens = mtmd_input_chunk_get_tokens_text(chunk, &n);
                prompt.insert(prompt.end(), tokens, tokens + n);
                continue;
            }
            auto media = std::make_shared<MediaChunk>();
            media->chunk.reset(mtmd_input_chunk_copy(chunk));
            media->n_tokens = mtmd_input_chunk_get_n_tokens(chunk);
            media->n_pos = mtmd_input_chunk_get_n_pos(chunk);
            media->audio = type == MTMD_INPUT_CHUNK_TYPE_AUDIO;
            spans.push_back(MediaSpan{prompt.size(), media});
            for (size_t t = 0; t < media->n_tokens; ++t) prompt.push_back(media_placeholder(bitmap.digest(), index++));
        }
    }
}

void Projector::encode(const MediaChunk& media, std::vector<float>& out) {
    if (mtmd_encode_chunk(ctx_.get(), media.chunk.get()) != 0) {
        throw Error(std::string("encoding the ") + (media.audio ? "audio clip" : "image") + " failed");
    }
    const size_t n = media.n_tokens * static_cast<size_t>(llama_model_n_embd_inp(model_->get()));
    const float* embd = mtmd_get_output_embd(ctx_.get());
    out.assign(embd, embd + n);
}

int Projector::decode(llama_context* ctx, const MediaChunk& media, std::vector<float>& embd, llama_pos n_past,
                      llama_seq_id seq, int n_batch, llama_pos* new_n_past) {
    return mtmd_helper_decode_image_chunk(ctx_.get(), ctx, media.chunk.get(), embd.data(), n_past, seq, n_batch,
                                          new_n_past, nullptr, nullptr);
}

}  // namespace mr
