// The multimodal projector and the decoded media it takes (mr/projector.hpp).
#include <pybind11/stl.h>

#include <string_view>

#include "bindings.hpp"

#include "mr/engine.hpp"
#include "mr/model.hpp"
#include "mr/projector.hpp"

namespace mr::bind {
namespace {

using namespace pybind11::literals;

Bitmap image(uint32_t width, uint32_t height, const py::bytes& rgb, const std::string& digest) {
    const std::string_view view = rgb;
    return Bitmap::image(width, height, reinterpret_cast<const unsigned char*>(view.data()), view.size(), digest);
}

Bitmap audio(const FloatArray& samples, const std::string& digest) {
    if (samples.ndim() != 1) throw py::value_error("audio samples must be a flat float32 array");
    return Bitmap::audio(samples.data(), static_cast<size_t>(samples.size()), digest);
}

// Sets request.prompt and request.media: the text segments with each bitmap between two.
void build(Projector& self, Request& request, const std::vector<TokenArray>& segments,
           const std::vector<Bitmap>& bitmaps) {
    std::vector<std::vector<llama_token>> texts;
    texts.reserve(segments.size());
    for (const TokenArray& a : segments) texts.push_back(to_tokens(a));
    std::vector<llama_token> prompt;
    std::vector<MediaSpan> spans;
    {
        py::gil_scoped_release nogil;  // mtmd preprocesses (resizes) the pictures here
        self.build(texts, bitmaps, prompt, spans);
    }
    request.prompt = std::move(prompt);
    request.media = std::move(spans);
}

}  // namespace

void bind_projector(py::module_& m) {
    py::class_<MediaSpan>(m, "MediaSpan")
        .def_readonly("start", &MediaSpan::start)
        .def_property_readonly("n_tokens", [](const MediaSpan& s) { return s.media->n_tokens; })
        .def_property_readonly("audio", [](const MediaSpan& s) { return s.media->audio; });
    py::class_<Bitmap>(m, "Bitmap")
        .def_static("image", &image, "width"_a, "height"_a, "rgb"_a, "digest"_a)
        .def_static("audio", &audio, "samples"_a, "digest"_a)
        .def_property_readonly("digest", &Bitmap::digest)
        .def_property_readonly("is_audio", &Bitmap::is_audio);
    py::class_<Projector, std::shared_ptr<Projector>>(m, "Projector")
        .def(py::init([](std::shared_ptr<Model> model, const std::string& path, int n_threads, bool use_gpu) {
                 return std::shared_ptr<Projector>(new Projector(std::move(model), path, n_threads, use_gpu),
                                                   FreeWithoutGil{});
             }),
             "model"_a, "path"_a, "n_threads"_a = 0, "use_gpu"_a = false, release_gil())
        .def_property_readonly("vision", &Projector::vision)
        .def_property_readonly("audio", &Projector::audio)
        .def_property_readonly("audio_sample_rate", &Projector::audio_sample_rate)
        .def("build", &build, "request"_a, "segments"_a, "media"_a);
}

}  // namespace mr::bind
