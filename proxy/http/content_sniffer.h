// Content-Type sniffing, a port of Go's net/http.DetectContentType (the WHATWG MIME-sniffing
// subset Go implements): what Traefik sends for a response whose backend gave no Content-Type.
#pragma once

#include <cstddef>
#include <string_view>

namespace berth::proxy::http {

/// Go's sniffLen: only the first bytes of a body are looked at.
inline constexpr size_t kSniffLength = 512;

/// The Content-Type Go's DetectContentType gives `first_bytes` (only the first kSniffLength bytes
/// are read; pass fewer when the body is shorter). Signatures are tried in Go's order: HTML tags
/// and "<?xml" after leading whitespace (TAB LF FF CR SP), then binary magic numbers at offset 0
/// (PDF, PostScript, UTF-16/UTF-8 BOMs, icons, BMP, GIF, WebP, PNG, JPEG, AIFF, MP3 (ID3), Ogg,
/// MIDI, AVI, WAVE, MP4, WebM, fonts, gzip, zip, RAR, wasm); otherwise "text/plain; charset=utf-8"
/// when no binary control byte follows the leading whitespace (empty input included), else
/// "application/octet-stream". Returns a static string; never allocates. Thread: any.
std::string_view detect_content_type(std::string_view first_bytes);

}  // namespace berth::proxy::http
