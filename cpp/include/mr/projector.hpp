// Images and audio in a prompt: a model's multimodal projector (llama.cpp's libmtmd).
//
// The server decodes untrusted files itself (Pillow, a maintained audio library) and hands over
// plain pixels or samples as a Bitmap; no C image or audio decoder ever sees a client's bytes.
// The Projector turns each bitmap into mtmd chunks at its place in the prompt (the model's own
// wrapping tokens, then the media chunk), and the engine thread encodes and decodes those chunks
// inside continuous batching (Engine::media_step).
//
// In a Request's token list each media token's place holds a placeholder: a negative value
// derived from the content's digest and the token's index, so the prefix cache (which compares
// token lists) reuses a picture sent again, and never confuses two pictures.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llama.h"
#include "mtmd.h"

namespace mr {

class Model;

struct BitmapFree {
    void operator()(mtmd_bitmap* b) const { mtmd_bitmap_free(b); }
};
struct ChunkFree {
    void operator()(mtmd_input_chunk* c) const { mtmd_input_chunk_free(c); }
};
struct MtmdFree {
    void operator()(mtmd_context* c) const { mtmd_free(c); }
};

// Decoded pixels (RGB, 8 bits, row-major) or samples (mono float32 at the projector's rate),
// with the content digest that keys the prefix cache.
class Bitmap {
public:
    static Bitmap image(uint32_t width, uint32_t height, const unsigned char* rgb, size_t n_bytes,
                        const std::string& digest);
    static Bitmap audio(const float* samples, size_t n_samples, const std::string& digest);
    const mtmd_bitmap* get() const { return bitmap_.get(); }
    const std::string& digest() const { return digest_; }
    bool is_audio() const { return mtmd_bitmap_is_audio(bitmap_.get()); }

private:
    Bitmap(mtmd_bitmap* b, std::string digest) : bitmap_(b, BitmapFree{}), digest_(std::move(digest)) {}
    std::shared_ptr<mtmd_bitmap> bitmap_;
    std::string digest_;
};

// One media chunk of a prompt, ready to encode.
struct MediaChunk {
    std::unique_ptr<mtmd_input_chunk, ChunkFree> chunk;
    size_t n_tokens = 0;  // KV cells it takes (and placeholders in the prompt)
    llama_pos n_pos = 0;  // positions it advances (fewer than n_tokens under M-RoPE)
    bool audio = false;
};

// Where a media chunk sits in a Request's prompt: its placeholders are prompt[start, start + n).
struct MediaSpan {
    size_t start = 0;
    std::shared_ptr<const MediaChunk> media;
    size_t end() const { return start + media->n_tokens; }
};

// A media token's placeholder (always < -2: -1 and -2 are the engine's "no token" values).
llama_token media_placeholder(const std::string& digest, size_t index);
inline bool is_placeholder(llama_token t) { return t < -2; }
// The longest prefix of [0, n) that holds no part of a media chunk: a cached prefix must hold
// a chunk whole (its attention may be bidirectional, and it is encoded as one).
size_t whole_media_prefix(const std::vector<MediaSpan>& spans, size_t n);
// The position of prompt token `n` (not inside a media chunk). A chunk takes n_tokens KV cells
// but advances n_pos positions: as many, except under M-RoPE (the Qwen-VL family), where a
// picture's positions are its grid's side, not its area.
llama_pos position_of(const std::vector<MediaSpan>& spans, size_t n);

class Projector {
public:
    // Loads `path` (an mmproj GGUF) for `model`; throws ModelLoadError with llama.cpp's reason.
    Projector(std::shared_ptr<Model> model, const std::string& path, int n_threads, bool use_gpu);
    Projector(const Projector&) = delete;
    Projector& operator=(const Projector&) = delete;

    bool vision() const { return mtmd_support_vision(ctx_.get()); }
    bool audio() const { return mtmd_support_audio(ctx_.get()); }
    int audio_sample_rate() const { return mtmd_get_audio_sample_rate(ctx_.get()); }
    const std::string& path() const { return path_; }

    // Appends the prompt text of `segments` with a bitmap between each two (segments.size() ==
    // bitmaps.size() + 1) to `prompt` and `spans`: each bitmap as the model's wrapping tokens and
    // its media chunks. Thread-safe (mtmd_tokenize is). Throws InvalidArgument when a bitmap
    // is of a kind the projector does not take, or mtmd cannot preprocess it.
    void build(const std::vector<std::vector<llama_token>>& segments, const std::vector<Bitmap>& bitmaps,
               std::vector<llama_token>& prompt, std::vector<MediaSpan>& spans) const;

    // The engine thread's part. encode(): the chunk's embeddings into `out`
    // (n_tokens * n_embd floats); decode(): those embeddings into `seq`'s cells from position
    // `n_past` (llama_decode's codes; 1: no room in the KV cache).
    void encode(const MediaChunk& media, std::vector<float>& out);
    int decode(llama_context* ctx, const MediaChunk& media, std::vector<float>& embd, llama_pos n_past,
               llama_seq_id seq, int n_batch, llama_pos* new_n_past);

private:
    std::shared_ptr<Model> model_;
    std::string path_;
    std::unique_ptr<mtmd_context, MtmdFree> ctx_;
};

}  // namespace mr
