// The CSV of every tuning trial (tune.h).
#include <sstream>

#include "dynamicrad/tune.h"
#include "io/atomic_file.h"

namespace dynamicrad {
namespace {

constexpr const char* kHeader =
    "cell,regime,mode,method,trial,gamma,lambda,theta_m,theta_c,dense_adjacent,r_near,r_far,"
    "tau_near_rel,tau_far_rel,loss,error,sparsity,relative_l2,eval_seconds,suggest_seconds";

}  // namespace

void write_trials_csv(const std::string& path, const std::vector<TrialRecord>& trials) {
  std::ostringstream out;
  out.precision(10);
  out << kHeader << "\n";
  for (const TrialRecord& t : trials) {
    const TunedParams& p = t.params;
    out << to_string(t.regime) << "/" << to_string(t.mode) << "," << to_string(t.regime) << ","
        << to_string(t.mode) << "," << to_string(t.method) << "," << t.trial << "," << p.prior.gamma
        << "," << p.prior.lambda << "," << p.prior.theta_m << "," << p.prior.theta_c << ","
        << (p.prior.dense_adjacent ? "true" : "false") << ",";
    if (p.mode == TuneMode::static_ratio) {
      out << p.r_near << "," << p.r_far << ",,,";
    } else if (p.mode == TuneMode::dynamic_threshold) {
      out << ",," << p.tau_near_rel << "," << p.tau_far_rel << ",";
    } else {
      out << ",,,,";
    }
    const Evaluation& e = t.evaluation;
    out << e.loss << "," << e.error << "," << e.sparsity << "," << e.relative_l2 << "," << e.seconds
        << "," << t.suggest_seconds << "\n";
  }
  detail::write_text_file(path, out.str());
}

}  // namespace dynamicrad
