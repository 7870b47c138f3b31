#include "messages/interfaces.hpp"

namespace kiln {

std::string to_string(engine_errc e) {
  switch (e) {
  case engine_errc::no_build_slots: return "no_build_slots";
  case engine_errc::cancelled: return "cancelled";
  case engine_errc::store_failure: return "store_failure";
  case engine_errc::input_rejected: return "input_rejected";
  case engine_errc::hook_failed: return "hook_failed";
  case engine_errc::builder_failure: return "builder_failure";
  case engine_errc::worker_lost: return "worker_lost";
  case engine_errc::no_workers: return "no_workers";
  }
  return "unknown";
}

std::string error_text(const caf::error& e) {
  auto& ctx = e.context();
  if (ctx.size() >= 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return caf::to_string(e);
}

void add_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<build_result>("kiln.build_result");
  cfg.add_message_type<build_options>("kiln.build_options");
  cfg.add_message_type<goal_request>("kiln.goal_request");
  cfg.add_message_type<builder_outcome>("kiln.builder_outcome");
  cfg.add_message_type<derivation>("kiln.derivation");
  cfg.add_message_type<substitute_outcome>("kiln.substitute_outcome");
  cfg.add_message_type<derivation_output>("kiln.derivation_output");
  cfg.add_message_type<loaded_derivation>("kiln.loaded_derivation");
  cfg.add_message_type<std::vector<loaded_derivation>>("kiln.loaded_derivations");
  cfg.add_message_type<build_request>("kiln.build_request");
  cfg.add_message_type<build_report>("kiln.build_report");
  cfg.add_message_type<scanned_output>("kiln.scanned_output");
  cfg.add_message_type<std::vector<scanned_output>>("kiln.scanned_outputs");
  cfg.add_message_type<sandbox_path>("kiln.sandbox_path");
  cfg.add_message_type<std::vector<sandbox_path>>("kiln.sandbox_paths");
  cfg.add_message_type<build_round>("kiln.build_round");
  cfg.add_message_type<std::map<std::string, derivation_output>>("kiln.output_map");
  cfg.add_message_type<std::map<std::string, std::set<std::string>>>("kiln.input_drv_map");
  cfg.add_message_type<std::map<std::string, std::string>>("kiln.string_map");
  cfg.add_message_type<std::map<std::string, bool>>("kiln.bool_map");
  cfg.add_message_type<std::set<std::string>>("kiln.string_set");
  cfg.add_message_type<store_actor>("kiln.store_actor");
  cfg.add_message_type<logger_actor>("kiln.logger_actor");
  cfg.add_message_type<builder_actor>("kiln.builder_actor");
  cfg.add_message_type<scheduler_actor>("kiln.scheduler_actor");
  cfg.add_message_type<hook_actor>("kiln.hook_actor");
  cfg.add_message_type<worker_actor>("kiln.worker_actor");
  cfg.add_message_type<one_substituter_actor>("kiln.one_substituter_actor");
  cfg.add_error_category(caf::atom("kiln"), [](uint8_t code, caf::atom_value, const caf::message&) {
    return "kiln::" + to_string(static_cast<engine_errc>(code));
  });
}

} // namespace kiln
