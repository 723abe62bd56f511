// Provenance as data: what produced the runs (each recorded command and the commit it
// ran at), what wrote the report, the data files read and the warnings reading them
// raised; built once, printed by both renderers.
#pragma once

#include <string>
#include <vector>

#include "report/context.hpp"
#include "whtlm/report.hpp"

namespace whtlm::report::detail {

struct Provenance {
  // A command that produced data, as an experiment.json records it.
  struct Command {
    std::string command, commit;
    std::string record;       // the file that records it, e.g. "experiment.json"
    std::string record_link;  // that file's link from the report folder
  };
  std::vector<Command> commands;
  std::string report_command, report_commit;  // what wrote this report
  std::vector<std::string> data_files;        // links from the report folder
  std::vector<std::string> warnings;
};

Provenance provenance(const Context& c, const WriteOptions& o);

}  // namespace whtlm::report::detail
