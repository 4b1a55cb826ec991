// Gaussian-process regression for the offline tuner (PAPER.md part 3): a zero-mean GP with an ARD
// Matérn 5/2 kernel and Gaussian observation noise, its log marginal likelihood and gradient, and
// hyperparameter fitting by maximising that likelihood. Expected improvement lives here too.
//
//   k(a, b) = signal_variance * m(r),  r = sqrt(sum_i ((a_i - b_i) / length_scales[i])^2),
//   m(r)    = (1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)
//   y = f(x) + eps,  eps ~ N(0, noise_variance)
// Inputs are points of `dims` coordinates (the tuner uses the unit cube); targets are used as
// given (callers standardise them). Linear algebra is Eigen's, kept out of this header.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace dynamicrad {

// m(r) above, r >= 0.
double matern52(double r);

struct GpHyperparameters {
  std::vector<double> length_scales;  // one per input dimension, > 0
  double signal_variance = 1.0;       // > 0
  double noise_variance = 1e-6;       // >= 0
};

// The kernel of two points of length_scales.size() coordinates.
double matern52_kernel(const double* a, const double* b, const GpHyperparameters& hyper);

// Box for fitting, applied to every length scale / variance; fitting searches log space.
struct GpFitOptions {
  double min_length_scale = 0.02;
  double max_length_scale = 20.0;
  double min_signal_variance = 0.01;
  double max_signal_variance = 100.0;
  double min_noise_variance = 1e-6;  // keeps the Cholesky factor well conditioned
  double max_noise_variance = 0.25;
  int restarts = 6;          // random starts besides the current hyperparameters
  int max_iterations = 80;   // L-BFGS iterations per start
  std::uint64_t seed = 1;
};

struct GpPrediction {
  double mean = 0.0;
  double variance = 0.0;  // of the latent f (noise excluded), >= 0
};

class GaussianProcess {
 public:
  explicit GaussianProcess(int dims);
  ~GaussianProcess();
  GaussianProcess(GaussianProcess&&) noexcept;
  GaussianProcess& operator=(GaussianProcess&&) noexcept;

  int dims() const;
  int size() const;  // observations

  // x: size * dims coordinates, point-major; y: size values. Throws Error on mismatched sizes or
  // non-finite values.
  void set_data(std::vector<double> x, std::vector<double> y);
  // Throws Error naming a bad hyperparameter. The default: length scales 0.5, variances 1 / 1e-6.
  void set_hyperparameters(const GpHyperparameters& hyper);
  const GpHyperparameters& hyperparameters() const;

  // log p(y | x, hyperparameters) = -y'K^-1 y / 2 - log|K| / 2 - n log(2 pi) / 2.
  double log_marginal_likelihood() const;
  // Its gradient with respect to (log length_scales..., log signal_variance, log noise_variance).
  std::vector<double> log_marginal_likelihood_gradient() const;

  // Maximises the log marginal likelihood over the box of `options` (multi-start L-BFGS in log
  // space, starting from the current hyperparameters and `restarts` random points), keeps the
  // best and returns its log marginal likelihood. Deterministic for the seed.
  double fit(const GpFitOptions& options);

  // Posterior of f at one point of dims() coordinates.
  GpPrediction predict(const double* x) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Expected improvement below `best` of a Gaussian N(mean, stddev^2), with exploration margin xi:
//   EI = (best - mean - xi) Phi(z) + stddev phi(z),  z = (best - mean - xi) / stddev,
// and max(best - mean - xi, 0) when stddev == 0.
double expected_improvement(double mean, double stddev, double best, double xi = 0.0);

}  // namespace dynamicrad
