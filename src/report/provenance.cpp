// Provenance as data (provenance.hpp): the recorded commands, the report's own command
// line and commit, links to the data files, and the warnings, from the loaded data.
#include "report/provenance.hpp"

#include <filesystem>

namespace whtlm::report::detail {

Provenance provenance(const Context& c, const WriteOptions& o) {
  Provenance p;
  for (const Data::Command& k : c.data.commands)
    p.commands.push_back({k.command, k.commit, std::filesystem::path(k.source).filename().string(),
                          c.link(k.source)});
  p.report_command = o.command_line;
  p.report_commit = o.commit;
  for (const std::string& f : c.data.sources) p.data_files.push_back(c.link(f));
  p.warnings = c.data.warnings;
  return p;
}

}  // namespace whtlm::report::detail
