// A 5 x 7 pixel bitmap font for labels in generated pictures (plot axes, legends, titles):
// digits, the letters A-Z (lower case is drawn as upper case) and a little punctuation.
#pragma once

namespace dynamicrad::detail {

inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 7;

// The glyph of c as kGlyphHeight rows of kGlyphWidth characters, '#' for ink; nullptr when the
// font has no such glyph (drawn as a blank).
const char* const* glyph(char c);

}  // namespace dynamicrad::detail
