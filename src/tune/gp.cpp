// Gaussian-process regression (gp.h) on Eigen.
#include "dynamicrad/gp.h"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "dynamicrad/error.h"
#include "core/number_text.h"
#include "tune/lbfgs.h"
#include "tune/random.h"

namespace dynamicrad {
namespace {

constexpr double kSqrt5 = 2.23606797749979;
constexpr double kLogTwoPi = 1.8378770664093453;
constexpr double kInvSqrt2 = 0.7071067811865476;
constexpr double kInvSqrt2Pi = 0.3989422804014327;
// Jitter added to the diagonal, relative to the signal variance, when a Cholesky factorisation
// fails numerically (duplicate points with a tiny noise variance).
constexpr double kJitter[] = {1e-10, 1e-8, 1e-6, 1e-4};

void check_hyper(const GpHyperparameters& h, int dims) {
  if (static_cast<int>(h.length_scales.size()) != dims) {
    throw Error("gp.length_scales", "holds " + std::to_string(h.length_scales.size()) +
                                        " values, expected one per dimension (" +
                                        std::to_string(dims) + ")");
  }
  for (std::size_t i = 0; i < h.length_scales.size(); ++i) {
    if (!(h.length_scales[i] > 0.0 && std::isfinite(h.length_scales[i]))) {
      throw Error("gp.length_scales[" + std::to_string(i) + "]",
                  detail::shortest_text(h.length_scales[i]) + ": allowed range (0, inf)");
    }
  }
  if (!(h.signal_variance > 0.0 && std::isfinite(h.signal_variance))) {
    throw Error("gp.signal_variance", detail::shortest_text(h.signal_variance) + ": allowed range (0, inf)");
  }
  if (!(h.noise_variance >= 0.0 && std::isfinite(h.noise_variance))) {
    throw Error("gp.noise_variance", detail::shortest_text(h.noise_variance) + ": allowed range [0, inf)");
  }
}

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

double sigmoid(double u) { return 1.0 / (1.0 + std::exp(-u)); }
double logit(double p) { return std::log(p / (1.0 - p)); }

}  // namespace

double matern52(double r) {
  const double s = kSqrt5 * r;
  return (1.0 + s + s * s / 3.0) * std::exp(-s);
}

double matern52_kernel(const double* a, const double* b, const GpHyperparameters& h) {
  double r2 = 0.0;
  for (std::size_t i = 0; i < h.length_scales.size(); ++i) {
    const double d = (a[i] - b[i]) / h.length_scales[i];
    r2 += d * d;
  }
  return h.signal_variance * matern52(std::sqrt(r2));
}

struct GaussianProcess::Impl {
  int dims = 0;
  RowMatrix x;  // [n, dims], row-major so that a point's coordinates are contiguous
  Eigen::VectorXd y;  // [n]
  GpHyperparameters hyper;
  Eigen::LLT<Eigen::MatrixXd> llt;
  Eigen::VectorXd alpha;  // K^-1 y
  bool factored = false;

  Eigen::MatrixXd covariance(const GpHyperparameters& h) const {
    const Eigen::Index n = x.rows();
    Eigen::MatrixXd k(n, n);
    for (Eigen::Index i = 0; i < n; ++i) {
      k(i, i) = h.signal_variance + h.noise_variance;
      for (Eigen::Index j = 0; j < i; ++j) {
        k(i, j) = k(j, i) = matern52_kernel(x.row(i).data(), x.row(j).data(), h);
      }
    }
    return k;
  }

  // Factors K (adding jitter when needed); false when it cannot.
  bool factor(const GpHyperparameters& h, Eigen::LLT<Eigen::MatrixXd>& out) const {
    Eigen::MatrixXd k = covariance(h);
    out.compute(k);
    for (double j : kJitter) {
      if (out.info() == Eigen::Success) return true;
      k.diagonal().array() += j * h.signal_variance;
      out.compute(k);
    }
    return out.info() == Eigen::Success;
  }

  void refresh() {
    factored = x.rows() > 0 && factor(hyper, llt);
    if (factored) alpha = llt.solve(y);
  }

  // Log marginal likelihood of hyperparameters h; with grad, also its gradient with respect to
  // (log length scales, log signal variance, log noise variance). -inf when K is not positive
  // definite.
  double lml(const GpHyperparameters& h, std::vector<double>* grad) const {
    const Eigen::Index n = x.rows();
    Eigen::LLT<Eigen::MatrixXd> f;
    if (!factor(h, f)) return -std::numeric_limits<double>::infinity();
    const Eigen::VectorXd a = f.solve(y);
    const Eigen::MatrixXd lower = f.matrixL();
    const double log_det = 2.0 * lower.diagonal().array().log().sum();
    const double value = -0.5 * y.dot(a) - 0.5 * log_det - 0.5 * static_cast<double>(n) * kLogTwoPi;
    if (grad == nullptr) return value;
    // d lml / d theta = tr(W dK/d theta) / 2, W = a a' - K^-1.
    const Eigen::MatrixXd w = a * a.transpose() - f.solve(Eigen::MatrixXd::Identity(n, n));
    grad->assign(static_cast<std::size_t>(dims + 2), 0.0);
    std::vector<double> scaled(static_cast<std::size_t>(dims));
    for (Eigen::Index i = 0; i < n; ++i) {
      (*grad)[dims] += 0.5 * w(i, i) * h.signal_variance;
      (*grad)[dims + 1] += 0.5 * w(i, i) * h.noise_variance;
      for (Eigen::Index j = 0; j < i; ++j) {
        double r2 = 0.0;
        for (int k = 0; k < dims; ++k) {
          const double d = (x(i, k) - x(j, k)) / h.length_scales[k];
          scaled[k] = d * d;
          r2 += scaled[k];
        }
        const double r = std::sqrt(r2);
        const double e = std::exp(-kSqrt5 * r);
        const double kij = h.signal_variance * (1.0 + kSqrt5 * r + 5.0 * r2 / 3.0) * e;
        // dk/d log l_k = s2 (5/3)(1 + sqrt5 r) exp(-sqrt5 r) (d_k / l_k)^2; both (i,j) and (j,i).
        const double common = h.signal_variance * (5.0 / 3.0) * (1.0 + kSqrt5 * r) * e;
        for (int k = 0; k < dims; ++k) (*grad)[k] += w(i, j) * common * scaled[k];
        (*grad)[dims] += w(i, j) * kij;
      }
    }
    return value;
  }
};

GaussianProcess::GaussianProcess(int dims) : impl_(std::make_unique<Impl>()) {
  if (dims < 1) throw Error("gp.dims", std::to_string(dims) + ": allowed range [1, inf)");
  impl_->dims = dims;
  impl_->hyper.length_scales.assign(static_cast<std::size_t>(dims), 0.5);
  impl_->x.resize(0, dims);
}

GaussianProcess::~GaussianProcess() = default;
GaussianProcess::GaussianProcess(GaussianProcess&&) noexcept = default;
GaussianProcess& GaussianProcess::operator=(GaussianProcess&&) noexcept = default;

int GaussianProcess::dims() const { return impl_->dims; }
int GaussianProcess::size() const { return static_cast<int>(impl_->x.rows()); }

void GaussianProcess::set_data(std::vector<double> x, std::vector<double> y) {
  const auto dims = static_cast<std::size_t>(impl_->dims);
  if (x.size() != y.size() * dims) {
    throw Error("gp.x", "holds " + std::to_string(x.size()) + " coordinates, expected " +
                            std::to_string(y.size() * dims) + " (" + std::to_string(y.size()) +
                            " points of " + std::to_string(dims) + ")");
  }
  for (std::size_t i = 0; i < y.size(); ++i) {
    if (!std::isfinite(y[i])) throw Error("gp.y[" + std::to_string(i) + "]", "not finite");
  }
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) throw Error("gp.x[" + std::to_string(i) + "]", "not finite");
  }
  const auto n = static_cast<Eigen::Index>(y.size());
  impl_->x = Eigen::Map<const RowMatrix>(x.data(), n, impl_->dims);
  impl_->y = Eigen::Map<const Eigen::VectorXd>(y.data(), n);
  impl_->refresh();
}

void GaussianProcess::set_hyperparameters(const GpHyperparameters& hyper) {
  check_hyper(hyper, impl_->dims);
  impl_->hyper = hyper;
  impl_->refresh();
}

const GpHyperparameters& GaussianProcess::hyperparameters() const { return impl_->hyper; }

double GaussianProcess::log_marginal_likelihood() const { return impl_->lml(impl_->hyper, nullptr); }

std::vector<double> GaussianProcess::log_marginal_likelihood_gradient() const {
  std::vector<double> grad;
  impl_->lml(impl_->hyper, &grad);
  return grad;
}

double GaussianProcess::fit(const GpFitOptions& o) {
  const int d = impl_->dims;
  if (!(o.min_length_scale > 0.0 && o.min_length_scale < o.max_length_scale)) {
    throw Error("gp_fit.length_scale", "need 0 < min_length_scale < max_length_scale");
  }
  if (!(o.min_signal_variance > 0.0 && o.min_signal_variance < o.max_signal_variance)) {
    throw Error("gp_fit.signal_variance", "need 0 < min_signal_variance < max_signal_variance");
  }
  if (!(o.min_noise_variance > 0.0 && o.min_noise_variance < o.max_noise_variance)) {
    throw Error("gp_fit.noise_variance", "need 0 < min_noise_variance < max_noise_variance");
  }
  if (o.restarts < 0) throw Error("gp_fit.restarts", std::to_string(o.restarts) + ": allowed range [0, inf)");
  if (size() == 0) return log_marginal_likelihood();

  // theta_i = lo_i + (hi_i - lo_i) * sigmoid(u_i), theta in log space: an unconstrained search
  // over the box.
  std::vector<double> lo(static_cast<std::size_t>(d + 2)), hi(lo.size());
  for (int k = 0; k < d; ++k) {
    lo[k] = std::log(o.min_length_scale);
    hi[k] = std::log(o.max_length_scale);
  }
  lo[d] = std::log(o.min_signal_variance);
  hi[d] = std::log(o.max_signal_variance);
  lo[d + 1] = std::log(o.min_noise_variance);
  hi[d + 1] = std::log(o.max_noise_variance);
  auto hyper_of = [&](const std::vector<double>& u) {
    GpHyperparameters h;
    h.length_scales.resize(static_cast<std::size_t>(d));
    for (int k = 0; k < d; ++k) h.length_scales[k] = std::exp(lo[k] + (hi[k] - lo[k]) * sigmoid(u[k]));
    h.signal_variance = std::exp(lo[d] + (hi[d] - lo[d]) * sigmoid(u[d]));
    h.noise_variance = std::exp(lo[d + 1] + (hi[d + 1] - lo[d + 1]) * sigmoid(u[d + 1]));
    return h;
  };
  auto objective = [&](const std::vector<double>& u, std::vector<double>& grad_u) {
    std::vector<double> grad;
    const double value = impl_->lml(hyper_of(u), &grad);
    grad_u.resize(u.size());
    if (!std::isfinite(value)) return std::numeric_limits<double>::infinity();
    for (std::size_t k = 0; k < u.size(); ++k) {
      const double s = sigmoid(u[k]);
      grad_u[k] = -grad[k] * (hi[k] - lo[k]) * s * (1.0 - s);
    }
    return -value;
  };
  // Keeps a start strictly inside the box so that its u is finite.
  auto u_of = [&](std::size_t k, double theta) {
    const double p = std::clamp((theta - lo[k]) / (hi[k] - lo[k]), 1e-3, 1.0 - 1e-3);
    return logit(p);
  };

  std::vector<std::vector<double>> starts;
  {
    const GpHyperparameters& h = impl_->hyper;
    std::vector<double> u(lo.size());
    for (int k = 0; k < d; ++k) u[k] = u_of(k, std::log(h.length_scales[k]));
    u[d] = u_of(d, std::log(h.signal_variance));
    u[d + 1] = u_of(d + 1, std::log(std::max(h.noise_variance, o.min_noise_variance)));
    starts.push_back(std::move(u));
  }
  detail::SplitMix rng(detail::derive_seed(o.seed, 21, static_cast<std::uint64_t>(size())));
  for (int r = 0; r < o.restarts; ++r) {
    std::vector<double> u(lo.size());
    for (std::size_t k = 0; k < u.size(); ++k) u[k] = logit(rng.uniform(0.05, 0.95));
    starts.push_back(std::move(u));
  }

  detail::LbfgsOptions lbfgs;
  lbfgs.max_iterations = o.max_iterations;
  double best_value = std::numeric_limits<double>::infinity();
  std::vector<double> best_u;
  for (std::vector<double>& u : starts) {
    const double value = detail::minimize_lbfgs(objective, u, lbfgs);
    if (value < best_value) {
      best_value = value;
      best_u = u;
    }
  }
  if (!best_u.empty()) {
    impl_->hyper = hyper_of(best_u);
    impl_->refresh();
  }
  return log_marginal_likelihood();
}

GpPrediction GaussianProcess::predict(const double* point) const {
  const Impl& m = *impl_;
  GpPrediction p;
  if (!m.factored) {
    p.variance = m.hyper.signal_variance;
    return p;
  }
  const Eigen::Index n = m.x.rows();
  Eigen::VectorXd k(n);
  for (Eigen::Index i = 0; i < n; ++i) k(i) = matern52_kernel(m.x.row(i).data(), point, m.hyper);
  p.mean = k.dot(m.alpha);
  const Eigen::VectorXd v = m.llt.matrixL().solve(k);
  p.variance = std::max(0.0, m.hyper.signal_variance - v.squaredNorm());
  return p;
}

double expected_improvement(double mean, double stddev, double best, double xi) {
  const double gain = best - mean - xi;
  if (!(stddev > 0.0)) return std::max(gain, 0.0);
  const double z = gain / stddev;
  const double cdf = 0.5 * std::erfc(-z * kInvSqrt2);
  const double pdf = kInvSqrt2Pi * std::exp(-0.5 * z * z);
  return std::max(0.0, gain * cdf + stddev * pdf);
}

}  // namespace dynamicrad
