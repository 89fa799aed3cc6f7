// Go's DetectContentType signature table and matching rules; see content_sniffer.h.
#include "proxy/http/content_sniffer.h"

#include <array>
#include <cstdint>

#include "base/text.h"

namespace berth::proxy::http {
namespace {

using namespace std::string_view_literals;

enum class Rule : uint8_t {
  kHtml,    // case-insensitive tag after leading whitespace, then a tag-terminating byte
  kMasked,  // (byte & mask) == pattern at offset 0 (or after whitespace with skip_ws)
  kMp4,     // an "ftyp" box naming an mp4 brand
};

struct Signature {
  Rule rule;
  std::string_view pattern;
  std::string_view mask;  // empty: every byte of `pattern` must match exactly
  std::string_view type;
  bool skip_ws = false;
};

constexpr auto kHtml = "text/html; charset=utf-8"sv;
constexpr auto kRar = "application/x-rar-compressed"sv;
constexpr auto kIcon = "image/x-icon"sv;
constexpr auto kGif = "image/gif"sv;
// RIFF containers: a 4-byte size sits between "RIFF" and the form type.
constexpr auto kRiffMask = "\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF"sv;

// Embedded OpenType: 34 bytes of anything, then "LP".
constexpr std::array<char, 36> kEotPattern = [] {
  std::array<char, 36> a{};
  a[34] = 'L';
  a[35] = 'P';
  return a;
}();
constexpr std::array<char, 36> kEotMask = [] {
  std::array<char, 36> a{};
  a[34] = a[35] = char(0xFF);
  return a;
}();

// Go's sniffSignatures, in Go's order (the first match wins). Literals are split where a hex
// escape would otherwise swallow the next character ("\x00" "AIFF").
constexpr Signature kSignatures[] = {
    {Rule::kHtml, "<!DOCTYPE HTML"sv, {}, kHtml},
    {Rule::kHtml, "<HTML"sv, {}, kHtml},
    {Rule::kHtml, "<HEAD"sv, {}, kHtml},
    {Rule::kHtml, "<SCRIPT"sv, {}, kHtml},
    {Rule::kHtml, "<IFRAME"sv, {}, kHtml},
    {Rule::kHtml, "<H1"sv, {}, kHtml},
    {Rule::kHtml, "<DIV"sv, {}, kHtml},
    {Rule::kHtml, "<FONT"sv, {}, kHtml},
    {Rule::kHtml, "<TABLE"sv, {}, kHtml},
    {Rule::kHtml, "<A"sv, {}, kHtml},
    {Rule::kHtml, "<STYLE"sv, {}, kHtml},
    {Rule::kHtml, "<TITLE"sv, {}, kHtml},
    {Rule::kHtml, "<B"sv, {}, kHtml},
    {Rule::kHtml, "<BODY"sv, {}, kHtml},
    {Rule::kHtml, "<BR"sv, {}, kHtml},
    {Rule::kHtml, "<P"sv, {}, kHtml},
    {Rule::kHtml, "<!--"sv, {}, kHtml},
    {Rule::kMasked, "<?xml"sv, {}, "text/xml; charset=utf-8"sv, true},
    {Rule::kMasked, "%PDF-"sv, {}, "application/pdf"sv},
    {Rule::kMasked, "%!PS-Adobe-"sv, {}, "application/postscript"sv},
    // Byte order marks: Go requires two (UTF-16) or one (UTF-8) more bytes of any value.
    {Rule::kMasked, "\xFE\xFF\x00\x00"sv, "\xFF\xFF\x00\x00"sv, "text/plain; charset=utf-16be"sv},
    {Rule::kMasked, "\xFF\xFE\x00\x00"sv, "\xFF\xFF\x00\x00"sv, "text/plain; charset=utf-16le"sv},
    {Rule::kMasked, "\xEF\xBB\xBF\x00"sv, "\xFF\xFF\xFF\x00"sv, "text/plain; charset=utf-8"sv},
    {Rule::kMasked, "\x00\x00\x01\x00"sv, {}, kIcon},
    {Rule::kMasked, "\x00\x00\x02\x00"sv, {}, kIcon},  // cursor
    {Rule::kMasked, "BM"sv, {}, "image/bmp"sv},
    {Rule::kMasked, "GIF87a"sv, {}, kGif},
    {Rule::kMasked, "GIF89a"sv, {}, kGif},
    {Rule::kMasked, "RIFF\x00\x00\x00\x00WEBPVP"sv, "\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF\xFF\xFF"sv,
     "image/webp"sv},
    {Rule::kMasked, "\x89PNG\r\n\x1A\n"sv, {}, "image/png"sv},
    {Rule::kMasked, "\xFF\xD8\xFF"sv, {}, "image/jpeg"sv},
    {Rule::kMasked, "FORM\x00\x00\x00\x00" "AIFF"sv, kRiffMask, "audio/aiff"sv},
    {Rule::kMasked, "ID3"sv, {}, "audio/mpeg"sv},
    {Rule::kMasked, "OggS\x00"sv, {}, "application/ogg"sv},
    {Rule::kMasked, "MThd\x00\x00\x00\x06"sv, {}, "audio/midi"sv},
    {Rule::kMasked, "RIFF\x00\x00\x00\x00" "AVI "sv, kRiffMask, "video/avi"sv},
    {Rule::kMasked, "RIFF\x00\x00\x00\x00WAVE"sv, kRiffMask, "audio/wave"sv},
    {Rule::kMp4, {}, {}, "video/mp4"sv},
    {Rule::kMasked, "\x1A\x45\xDF\xA3"sv, {}, "video/webm"sv},
    {Rule::kMasked, std::string_view(kEotPattern.data(), kEotPattern.size()),
     std::string_view(kEotMask.data(), kEotMask.size()), "application/vnd.ms-fontobject"sv},
    {Rule::kMasked, "\x00\x01\x00\x00"sv, {}, "font/ttf"sv},
    {Rule::kMasked, "OTTO"sv, {}, "font/otf"sv},
    {Rule::kMasked, "ttcf"sv, {}, "font/collection"sv},
    {Rule::kMasked, "wOFF"sv, {}, "font/woff"sv},
    {Rule::kMasked, "wOF2"sv, {}, "font/woff2"sv},
    {Rule::kMasked, "\x1F\x8B\x08"sv, {}, "application/x-gzip"sv},
    {Rule::kMasked, "PK\x03\x04"sv, {}, "application/zip"sv},
    {Rule::kMasked, "Rar!\x1A\x07\x00"sv, {}, kRar},      // RAR 1.5 to 4
    {Rule::kMasked, "Rar!\x1A\x07\x01\x00"sv, {}, kRar},  // RAR 5
    {Rule::kMasked, "\x00" "asm"sv, {}, "application/wasm"sv},
};

// The WHATWG whitespace bytes (0xWS).
bool is_ws(unsigned char b) { return b == '\t' || b == '\n' || b == '\x0c' || b == '\r' || b == ' '; }

// Control bytes that make data binary (WHATWG "binary data byte"); FF, ESC, CR, LF and TAB are text.
bool is_binary(unsigned char b) {
  return b <= 0x08 || b == 0x0B || (b >= 0x0E && b <= 0x1A) || (b >= 0x1C && b <= 0x1F);
}

bool matches_html(std::string_view data, std::string_view tag) {
  if (data.size() < tag.size() + 1) return false;
  // Go upper-cases data bytes only where the tag has a letter; for ASCII that is iequals.
  if (!iequals(data.substr(0, tag.size()), tag)) return false;
  char next = data[tag.size()];
  return next == ' ' || next == '>';
}

bool matches_masked(std::string_view data, const Signature& sig) {
  if (data.size() < sig.pattern.size()) return false;
  if (sig.mask.empty()) return data.substr(0, sig.pattern.size()) == sig.pattern;
  for (size_t i = 0; i < sig.pattern.size(); ++i) {
    auto b = static_cast<unsigned char>(data[i]) & static_cast<unsigned char>(sig.mask[i]);
    if (b != static_cast<unsigned char>(sig.pattern[i])) return false;
  }
  return true;
}

// WHATWG "signature for MP4": a box of `size` bytes (a multiple of 4, all present) whose type is
// "ftyp" and whose major or a compatible brand starts with "mp4"; bytes 12..15 are the version.
bool matches_mp4(std::string_view data) {
  if (data.size() < 12) return false;
  auto byte = [&](size_t i) { return uint32_t(static_cast<unsigned char>(data[i])); };
  size_t box_size = byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3);
  if (data.size() < box_size || box_size % 4 != 0) return false;
  if (data.substr(4, 4) != "ftyp"sv) return false;
  for (size_t at = 8; at < box_size; at += 4) {
    if (at == 12) continue;
    if (data.substr(at, 3) == "mp4"sv) return true;
  }
  return false;
}

}  // namespace

std::string_view detect_content_type(std::string_view first_bytes) {
  std::string_view data = first_bytes.substr(0, kSniffLength);
  size_t first_non_ws = 0;
  while (first_non_ws < data.size() && is_ws(static_cast<unsigned char>(data[first_non_ws]))) ++first_non_ws;
  std::string_view trimmed = data.substr(first_non_ws);

  for (const auto& sig : kSignatures) {
    bool hit = false;
    switch (sig.rule) {
      case Rule::kHtml: hit = matches_html(trimmed, sig.pattern); break;
      case Rule::kMasked: hit = matches_masked(sig.skip_ws ? trimmed : data, sig); break;
      case Rule::kMp4: hit = matches_mp4(data); break;
    }
    if (hit) return sig.type;
  }
  for (char c : trimmed)
    if (is_binary(static_cast<unsigned char>(c))) return "application/octet-stream"sv;
  return "text/plain; charset=utf-8"sv;
}

}  // namespace berth::proxy::http
