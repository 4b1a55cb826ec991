// Checks an output path before a command computes anything, so that a path the command cannot write
// fails in a moment, not after minutes of work.
#pragma once

#include <string>

namespace dynamicrad::cli {

// Throws dynamicrad::Error (exit code 1) naming `path` when the library's writers (a temporary
// renamed over the file; FIFOs and devices written in place) cannot write it: a directory, a
// missing folder, a folder or special file without write permission.
void require_writable(const std::string& path);

}  // namespace dynamicrad::cli
