// Writing an output file (LUT, trials CSV, PNG) the one way every writer of the library shares:
//   - a symbolic link is followed, also a dangling one: its target is written and the link stays;
//   - an existing target that is not a regular file (a FIFO, a character device such as /dev/full,
//     a socket), and a path through /proc such as /dev/stdout, is written in place: no temporary
//     file, no rename;
//   - otherwise the bytes go to a new file ".<name>.XXXXXX" beside the target (created with O_EXCL,
//     so no existing file is touched), which is then renamed over the target: readers see the old
//     file or the new one, never a partial one.
// A directory is never a target. On any failure the temporary is removed and Error names the
// caller's path (never the temporary's).
#pragma once

#include <cstdio>
#include <functional>
#include <string>

namespace dynamicrad::detail {

// Puts the content into `file` (open for writing); returns "" on success, otherwise the reason.
using FileWriter = std::function<std::string(std::FILE* file)>;

void write_file(const std::string& path, const FileWriter& write);
void write_text_file(const std::string& path, const std::string& text);

}  // namespace dynamicrad::detail
