// side-compile: a logged compile run again with other flags into a scratch
// object, leaving everything the project's build wrote alone.
//
// `suture build` needs some translation units compiled a second way (with
// -fno-ipa-ra, to tell register allocation apart from every other difference;
// see diff/register-allocation.h). The compile line must be the project's own,
// as the wrapper ran it, or the comparison proves nothing about the objects
// that run; and it must not write what the project's compile wrote: not its
// object, not its dependency file (make would read the scratch object's name
// in it). So the line keeps every word but the other sources of a
// multi-source compile, -o and the options that ask for a dependency file
// (-MD, -MMD, -MF, -MT, -MQ, -MP, -MG, -Wp,-MD,..., -Wp,-MMD,...), and gets
// the extra flags and -o SCRATCH at its end, where they win over earlier ones
// (-fipa-ra given by the project is overridden by a later -fno-ipa-ra).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "build/wrapper/command-line.h"

namespace suture::build::wrapper {

// ARGS are the compiler's arguments LINE was parsed from (Step::compile or the
// compile of a split compile-and-link); SOURCE indexes LINE.sources.
std::vector<std::string> side_compile_args(const std::vector<std::string>& args, const CommandLine& line, size_t source,
                                           const std::vector<std::string>& extra, const std::string& output);

}  // namespace suture::build::wrapper
