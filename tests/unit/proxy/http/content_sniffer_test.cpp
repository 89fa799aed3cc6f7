// Unit tests for content_sniffer.h: one case per signature family of Go's DetectContentType, the
// whitespace and tag-terminator rules, the 512-byte window, and text versus binary. Expectations
// follow Go's sniff.go and its sniff_test.go vectors.
#include "proxy/http/content_sniffer.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace berth::proxy::http {
namespace {

using namespace std::string_view_literals;

constexpr auto kText = "text/plain; charset=utf-8"sv;
constexpr auto kHtml = "text/html; charset=utf-8"sv;
constexpr auto kBinary = "application/octet-stream"sv;

std::string_view sniff(std::string_view data) { return detect_content_type(data); }

// ---- text and binary

TEST(DetectContentType, EmptyInputIsText) { EXPECT_EQ(sniff(""), kText); }

TEST(DetectContentType, PlainAsciiAndUtf8AreText) {
  EXPECT_EQ(sniff("This is not HTML. It has ☃ though."), kText);
  EXPECT_EQ(sniff("line one\r\nline two\tand a form feed \x0c and ESC \x1b"), kText);
  EXPECT_EQ(sniff("\n\n\n"), kText);
}

TEST(DetectContentType, ControlBytesMakeItBinary) {
  EXPECT_EQ(sniff("\x01\x02\x03"), kBinary);
  EXPECT_EQ(sniff("text then a NUL\x00"sv), kBinary);
  EXPECT_EQ(sniff("vertical tab \x0b"), kBinary);
  EXPECT_EQ(sniff("\x0e"), kBinary);
  EXPECT_EQ(sniff("\x1a"), kBinary);
  EXPECT_EQ(sniff("\x1c"), kBinary);
  EXPECT_EQ(sniff("\x1f"), kBinary);
  EXPECT_EQ(sniff("\x7f\x80\xff"), kText);  // DEL and high bytes are not binary data bytes
}

TEST(DetectContentType, LooksOnlyAtTheFirst512Bytes) {
  std::string data(kSniffLength, 'a');
  data += '\x00';
  EXPECT_EQ(sniff(data), kText);
  data[kSniffLength - 1] = '\x01';
  EXPECT_EQ(sniff(data), kBinary);
  // A tag needs its terminating byte inside the window.
  std::string html(kSniffLength - 5, ' ');
  EXPECT_EQ(sniff(html + "<HTML>"), kText);
  EXPECT_EQ(sniff(html.substr(1) + "<HTML>"), kHtml);
}

// ---- HTML and XML

TEST(DetectContentType, HtmlTagsCaseInsensitiveWithTerminator) {
  EXPECT_EQ(sniff("<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\">"), kHtml);
  EXPECT_EQ(sniff("<!doctype html>"), kHtml);
  EXPECT_EQ(sniff("<HtMl><bOdY>blah blah blah</body></html>"), kHtml);
  EXPECT_EQ(sniff("<head>"), kHtml);
  EXPECT_EQ(sniff("<script src=x>"), kHtml);
  EXPECT_EQ(sniff("<iframe "), kHtml);
  EXPECT_EQ(sniff("<h1>title</h1>"), kHtml);
  EXPECT_EQ(sniff("<div>"), kHtml);
  EXPECT_EQ(sniff("<font>"), kHtml);
  EXPECT_EQ(sniff("<table>"), kHtml);
  EXPECT_EQ(sniff("<a href=x>"), kHtml);
  EXPECT_EQ(sniff("<style>"), kHtml);
  EXPECT_EQ(sniff("<title>"), kHtml);
  EXPECT_EQ(sniff("<b>bold"), kHtml);
  EXPECT_EQ(sniff("<body>"), kHtml);
  EXPECT_EQ(sniff("<br>"), kHtml);
  EXPECT_EQ(sniff("<p>"), kHtml);
  EXPECT_EQ(sniff("<!-- comment -->"), kHtml);
}

TEST(DetectContentType, HtmlNeedsSpaceOrAngleBracketAfterTheTag) {
  EXPECT_EQ(sniff("<html"), kText);        // no terminating byte at all
  EXPECT_EQ(sniff("<htmlx>"), kText);      // a longer tag name
  EXPECT_EQ(sniff("<html\t>"), kText);     // only SP and '>' terminate
  EXPECT_EQ(sniff("<!--comment-->"), kText);
  EXPECT_EQ(sniff("<bogus>"), kText);
  EXPECT_EQ(sniff("<h2>"), kText);  // only <h1> is in the table
}

TEST(DetectContentType, HtmlAndXmlSkipLeadingWhitespace) {
  EXPECT_EQ(sniff(" \t\n\x0c\r<html>"), kHtml);
  EXPECT_EQ(sniff("\n<?xml!"), "text/xml; charset=utf-8");
  EXPECT_EQ(sniff("<?xml version=\"1.0\"?><feed/>"), "text/xml; charset=utf-8");
  EXPECT_EQ(sniff("<?XML"), kText);  // xml is matched case-sensitively
  EXPECT_EQ(sniff("\v<html>"), kBinary);  // VT is not whitespace, and is a binary byte
}

TEST(DetectContentType, BinarySignaturesDoNotSkipWhitespace) {
  EXPECT_EQ(sniff(" %PDF-1.4"), kText);
  EXPECT_EQ(sniff(" GIF89a"), kText);
}

// ---- documents and byte order marks

TEST(DetectContentType, PdfAndPostScript) {
  EXPECT_EQ(sniff("%PDF-1.7\n%\xe2\xe3\xcf\xd3"), "application/pdf");
  EXPECT_EQ(sniff("%!PS-Adobe-3.0"), "application/postscript");
  EXPECT_EQ(sniff("%!PS-3.0"), kText);
}

TEST(DetectContentType, ByteOrderMarksNeedTheFollowingBytes) {
  EXPECT_EQ(sniff("\xFE\xFF\x00\x41"sv), "text/plain; charset=utf-16be");
  EXPECT_EQ(sniff("\xFF\xFE\x41\x00"sv), "text/plain; charset=utf-16le");
  EXPECT_EQ(sniff("\xEF\xBB\xBFhi"), "text/plain; charset=utf-8");
  EXPECT_EQ(sniff("\xEF\xBB\xBF"), kText);   // too short for the BOM rule, and still text
  EXPECT_EQ(sniff("\xFE\xFF\x00"sv), kBinary);  // too short: falls through to NUL = binary
}

// ---- images

TEST(DetectContentType, Images) {
  EXPECT_EQ(sniff("\x00\x00\x01\x00\x01\x00"sv), "image/x-icon");
  EXPECT_EQ(sniff("\x00\x00\x02\x00\x01\x00"sv), "image/x-icon");
  EXPECT_EQ(sniff("BMxxxxxxxx"), "image/bmp");
  EXPECT_EQ(sniff("GIF87a`"), "image/gif");
  EXPECT_EQ(sniff("GIF89a...."), "image/gif");
  EXPECT_EQ(sniff("RIFF\x10\x20\x30\x40WEBPVP8 "sv), "image/webp");
  EXPECT_EQ(sniff("\x89PNG\x0D\x0A\x1A\x0A\x00\x00\x00\x0DIHDR"sv), "image/png");
  EXPECT_EQ(sniff("\xFF\xD8\xFF\xE0\x00\x10JFIF"sv), "image/jpeg");
  EXPECT_EQ(sniff("\x89PNG"), kText);
}

// ---- audio and video

TEST(DetectContentType, AudioAndVideo) {
  EXPECT_EQ(sniff("FORM\x00\x00\x00\x00" "AIFF"sv), "audio/aiff");
  EXPECT_EQ(sniff("ID3\x03\x00\x00\x00\x00\x0f"sv), "audio/mpeg");
  EXPECT_EQ(sniff("OggS\x00\x02\x00\x00"sv), "application/ogg");
  EXPECT_EQ(sniff("OggS\x01"), kBinary);  // version byte must be 0
  EXPECT_EQ(sniff("MThd\x00\x00\x00\x06\x00\x01"sv), "audio/midi");
  EXPECT_EQ(sniff("MThd\x00\x00\x00\x05"sv), kBinary);
  EXPECT_EQ(sniff("RIFF\x01\x02\x03\x04" "AVI LIST"sv), "video/avi");
  EXPECT_EQ(sniff("RIFF\xff\xff\xff\xff" "WAVEfmt "sv), "audio/wave");
  EXPECT_EQ(sniff("RIFF\x00\x00\x00\x00" "ABCD"sv), kBinary);
  EXPECT_EQ(sniff("\x1A\x45\xDF\xA3\x01\x00\x00\x00"sv), "video/webm");
}

TEST(DetectContentType, Mp4NeedsAWholeFtypBoxWithAnMp4Brand) {
  // Go's sniff_test.go vector: major brand "mp42", compatible "isom" and "mp42".
  constexpr auto mp4 = "\x00\x00\x00\x18" "ftypmp42\x00\x00\x00\x00" "mp42isom<\x06t\xbfmdat"sv;
  EXPECT_EQ(sniff(mp4), "video/mp4");
  // The brand may be compatible rather than major.
  EXPECT_EQ(sniff("\x00\x00\x00\x14" "ftypisom\x00\x00\x02\x00" "mp41"sv), "video/mp4");
  // Bytes 12..15 are the minor version: "mp4" there does not count.
  EXPECT_EQ(sniff("\x00\x00\x00\x10" "ftypisom" "mp41"sv), kBinary);
  // A box size that is not a multiple of 4, or longer than the data, fails.
  EXPECT_EQ(sniff("\x00\x00\x00\x13" "ftypmp42\x00\x00\x00\x00" "mp4"sv), kBinary);
  EXPECT_EQ(sniff("\x00\x00\x00\x40" "ftypmp42\x00\x00\x00\x00"sv), kBinary);
  EXPECT_EQ(sniff("\x00\x00\x00\x10" "ftxpmp42\x00\x00\x00\x00"sv), kBinary);
}

// ---- fonts

TEST(DetectContentType, Fonts) {
  std::string eot(34, '\x07');
  eot += "LP";
  EXPECT_EQ(sniff(eot), "application/vnd.ms-fontobject");
  EXPECT_EQ(sniff(std::string(33, 'x') + "LP"), kText);  // "LP" must be at offset 34
  EXPECT_EQ(sniff("\x00\x01\x00\x00\x00\x0e"sv), "font/ttf");
  EXPECT_EQ(sniff("OTTO\x00\x0b"sv), "font/otf");
  EXPECT_EQ(sniff("ttcf\x00\x01\x00\x00"sv), "font/collection");
  EXPECT_EQ(sniff("wOFF\x00\x01\x00\x00"sv), "font/woff");
  EXPECT_EQ(sniff("wOF2\x00\x01\x00\x00"sv), "font/woff2");
  EXPECT_EQ(sniff("wOFF"), "font/woff");
}

// ---- archives and wasm

TEST(DetectContentType, ArchivesAndWasm) {
  EXPECT_EQ(sniff("\x1F\x8B\x08\x00\x00\x00\x00\x00"sv), "application/x-gzip");
  EXPECT_EQ(sniff("PK\x03\x04\x14\x00"sv), "application/zip");
  EXPECT_EQ(sniff("Rar!\x1A\x07\x00\xcf"sv), "application/x-rar-compressed");
  EXPECT_EQ(sniff("Rar!\x1A\x07\x01\x00"sv), "application/x-rar-compressed");
  EXPECT_EQ(sniff("Rar!\x1A\x07\x02\x00"sv), kBinary);
  EXPECT_EQ(sniff("\x00" "asm\x01\x00\x00\x00"sv), "application/wasm");
  // Not in Go's table: 7z and bzip2 fall back to the generic rules.
  EXPECT_EQ(sniff("7z\xBC\xAF\x27\x1C\x00\x04"sv), kBinary);
  EXPECT_EQ(sniff("BZh91AY&SY"), kText);
}

TEST(DetectContentType, FirstSignatureInGoOrderWins) {
  // "BM" is checked before the text rule even when the rest is text.
  EXPECT_EQ(sniff("BM is a band"), "image/bmp");
  // <?xml is checked after every HTML tag, so a document starting with a tag is HTML.
  EXPECT_EQ(sniff("<p> <?xml"), kHtml);
}

}  // namespace
}  // namespace berth::proxy::http
