// Errors raised by the DynamicRad library.
//
// The library reports bad input by throwing dynamicrad::Error (never exit(), never printing). The
// message names the offending field and, where there is one, the allowed range, e.g.
//   "geometry.block_size = 48: allowed values are 32, 64, 128".
#pragma once

#include <stdexcept>
#include <string>

namespace dynamicrad {

class Error : public std::invalid_argument {
 public:
  // field: dotted name of the offending input ("geometry.frames", "lut.json: rows[2].params.gamma").
  Error(const std::string& field, const std::string& problem)
      : std::invalid_argument(field + ": " + problem), field_(field) {}

  const std::string& field() const noexcept { return field_; }

 private:
  std::string field_;
};

// A file that could not be opened, read or written (the field is its path): the system's problem,
// not the content's. A file that opens but holds bad content is a plain Error.
class FileError : public Error {
 public:
  using Error::Error;
};

}  // namespace dynamicrad
