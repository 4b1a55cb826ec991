// Gaussian-process regression (gp.h): the Matérn 5/2 kernel, the posterior against a hand-computed
// case, interpolation, the log marginal likelihood (gradient, fitting) and expected improvement.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "dynamicrad/gp.h"
#include "test_support.h"

namespace dynamicrad {
namespace {

TEST(Matern52, KnownValues) {
  EXPECT_DOUBLE_EQ(matern52(0.0), 1.0);
  // (1 + sqrt5 + 5/3) exp(-sqrt5) at r = 1.
  EXPECT_NEAR(matern52(1.0), 0.5239941088318203, 1e-14);
  const double r = 0.37, s = std::sqrt(5.0) * r;
  EXPECT_NEAR(matern52(r), (1.0 + s + s * s / 3.0) * std::exp(-s), 1e-15);
  // Decreasing in r.
  for (double a = 0.0; a < 5.0; a += 0.25) EXPECT_GT(matern52(a), matern52(a + 0.25));
}

TEST(Matern52, KernelUsesPerDimensionLengthScales) {
  GpHyperparameters h;
  h.length_scales = {2.0, 0.5};
  h.signal_variance = 3.0;
  const double a[2] = {0.0, 0.0}, b[2] = {1.0, 0.25};
  // r = sqrt((1/2)^2 + (0.25/0.5)^2) = sqrt(0.5).
  EXPECT_NEAR(matern52_kernel(a, b, h), 3.0 * matern52(std::sqrt(0.5)), 1e-14);
}

TEST(GaussianProcess, MatchesHandComputedOneDimensionalPosterior) {
  // Points x = 0, 1 with y = 1, 0; unit length scale and variance, no noise. With k = m(1):
  //   mean(0.5) = m(0.5) (1 - k) / (1 - k^2) = m(0.5) / (1 + k)
  //   var(0.5)  = 1 - 2 m(0.5)^2 / (1 + k)
  GaussianProcess gp(1);
  GpHyperparameters h;
  h.length_scales = {1.0};
  h.signal_variance = 1.0;
  h.noise_variance = 0.0;
  gp.set_hyperparameters(h);
  gp.set_data({0.0, 1.0}, {1.0, 0.0});
  const double k = matern52(1.0), m = matern52(0.5);
  const double x = 0.5;
  const GpPrediction p = gp.predict(&x);
  EXPECT_NEAR(p.mean, m / (1.0 + k), 1e-12);
  EXPECT_NEAR(p.variance, 1.0 - 2.0 * m * m / (1.0 + k), 1e-12);
  // Log marginal likelihood of the same case: K = [[1, k], [k, 1]].
  const double det = 1.0 - k * k;
  const double quad = 1.0 / det;  // y' K^-1 y with y = (1, 0)
  EXPECT_NEAR(gp.log_marginal_likelihood(),
              -0.5 * quad - 0.5 * std::log(det) - std::log(2.0 * M_PI), 1e-12);
}

TEST(GaussianProcess, InterpolatesTrainingPoints) {
  dr_test::Rng rng(7);
  const int n = 12, dims = 3;
  std::vector<double> x, y;
  for (int i = 0; i < n; ++i) {
    double sum = 0.0;
    for (int d = 0; d < dims; ++d) {
      x.push_back(rng.uniform());
      sum += std::sin(3.0 * x.back());
    }
    y.push_back(sum);
  }
  GaussianProcess gp(dims);
  GpHyperparameters h;
  h.length_scales = {0.4, 0.6, 0.8};
  h.signal_variance = 2.0;
  h.noise_variance = 1e-10;
  gp.set_hyperparameters(h);
  gp.set_data(x, y);
  for (int i = 0; i < n; ++i) {
    const GpPrediction p = gp.predict(&x[static_cast<std::size_t>(i * dims)]);
    EXPECT_NEAR(p.mean, y[i], 1e-5);
    EXPECT_LT(p.variance, 1e-6);
  }
  // Far from the data the posterior returns to the prior.
  const double far[3] = {50.0, 50.0, 50.0};
  const GpPrediction p = gp.predict(far);
  EXPECT_NEAR(p.mean, 0.0, 1e-9);
  EXPECT_NEAR(p.variance, 2.0, 1e-9);
}

TEST(GaussianProcess, GradientMatchesFiniteDifferences) {
  dr_test::Rng rng(3);
  std::vector<double> x, y;
  for (int i = 0; i < 9; ++i) {
    x.push_back(rng.uniform());
    x.push_back(rng.uniform());
    y.push_back(std::cos(4.0 * x[x.size() - 2]) + 0.3 * x.back());
  }
  GaussianProcess gp(2);
  GpHyperparameters h;
  h.length_scales = {0.3, 0.7};
  h.signal_variance = 1.3;
  h.noise_variance = 0.01;
  gp.set_hyperparameters(h);
  gp.set_data(x, y);
  const std::vector<double> grad = gp.log_marginal_likelihood_gradient();
  ASSERT_EQ(grad.size(), 4u);
  const double eps = 1e-5;
  for (int k = 0; k < 4; ++k) {
    auto at = [&](double delta) {
      GpHyperparameters g = h;
      if (k < 2) g.length_scales[k] *= std::exp(delta);
      if (k == 2) g.signal_variance *= std::exp(delta);
      if (k == 3) g.noise_variance *= std::exp(delta);
      GaussianProcess other(2);
      other.set_hyperparameters(g);
      other.set_data(x, y);
      return other.log_marginal_likelihood();
    };
    const double numeric = (at(eps) - at(-eps)) / (2.0 * eps);
    EXPECT_NEAR(grad[k], numeric, 1e-5 * std::max(1.0, std::abs(numeric))) << "parameter " << k;
  }
}

TEST(GaussianProcess, FittingImprovesTheMarginalLikelihood) {
  dr_test::Rng rng(11);
  std::vector<double> x, y;
  for (int i = 0; i < 20; ++i) {
    const double a = rng.uniform(), b = rng.uniform();
    x.push_back(a);
    x.push_back(b);
    y.push_back(std::sin(6.0 * a));  // the second coordinate is irrelevant
  }
  GaussianProcess gp(2);
  gp.set_data(x, y);
  const double before = gp.log_marginal_likelihood();
  GpFitOptions options;
  options.seed = 5;
  const double after = gp.fit(options);
  EXPECT_GT(after, before + 1.0);
  EXPECT_DOUBLE_EQ(after, gp.log_marginal_likelihood());
  // The irrelevant dimension gets the longer length scale.
  EXPECT_GT(gp.hyperparameters().length_scales[1], gp.hyperparameters().length_scales[0]);
  // Deterministic for the seed.
  GaussianProcess again(2);
  again.set_data(x, y);
  EXPECT_DOUBLE_EQ(again.fit(options), after);
}

TEST(ExpectedImprovement, ZeroAtANoiselessObservedBestAndPositiveElsewhere) {
  GaussianProcess gp(1);
  GpHyperparameters h;
  h.length_scales = {0.3};
  h.noise_variance = 0.0;
  gp.set_hyperparameters(h);
  const std::vector<double> x = {0.1, 0.4, 0.7, 0.95};
  const std::vector<double> y = {0.5, -1.0, 0.2, 0.8};
  gp.set_data(x, y);
  const double best = -1.0;
  const GpPrediction at_best = gp.predict(&x[1]);
  EXPECT_NEAR(expected_improvement(at_best.mean, std::sqrt(at_best.variance), best), 0.0, 1e-6);
  for (double q : {0.0, 0.25, 0.5, 0.55, 0.85, 1.0}) {
    const GpPrediction p = gp.predict(&q);
    EXPECT_GT(expected_improvement(p.mean, std::sqrt(p.variance), best), 0.0) << "at " << q;
  }
}

TEST(ExpectedImprovement, ClosedForm) {
  // best - mean = 1, stddev 1: EI = Phi(1) + phi(1).
  const double phi = std::exp(-0.5) / std::sqrt(2.0 * M_PI);
  const double cdf = 0.5 * std::erfc(-1.0 / std::sqrt(2.0));
  EXPECT_NEAR(expected_improvement(0.0, 1.0, 1.0), cdf + phi, 1e-12);
  EXPECT_DOUBLE_EQ(expected_improvement(2.0, 0.0, 1.0), 0.0);
  EXPECT_DOUBLE_EQ(expected_improvement(0.25, 0.0, 1.0), 0.75);
  EXPECT_LT(expected_improvement(0.0, 1.0, 1.0, 0.5), expected_improvement(0.0, 1.0, 1.0));
}

TEST(GaussianProcess, BadInputsNameTheField) {
  GaussianProcess gp(2);
  GpHyperparameters h;
  h.length_scales = {1.0};
  EXPECT_DR_ERROR(gp.set_hyperparameters(h), "length_scales");
  h.length_scales = {1.0, -1.0};
  EXPECT_DR_ERROR(gp.set_hyperparameters(h), "length_scales");
  h.length_scales = {1.0, 1.0};
  h.signal_variance = 0.0;
  EXPECT_DR_ERROR(gp.set_hyperparameters(h), "signal_variance");
  EXPECT_DR_ERROR(gp.set_data({0.0, 1.0, 2.0}, {1.0, 2.0}), "x");
  EXPECT_DR_ERROR(gp.set_data({0.0, 1.0}, {NAN}), "y");
  EXPECT_DR_ERROR(GaussianProcess(0), "dims");
}

TEST(GaussianProcess, PosteriorVarianceIsNeverNegative) {
  // At noiseless training points the exact variance is 0; round-off must not make it negative.
  GaussianProcess gp(2);
  GpHyperparameters h;
  h.length_scales = {0.7, 1.3};
  h.signal_variance = 2.5;
  h.noise_variance = 0.0;
  gp.set_hyperparameters(h);
  std::vector<double> x, y;
  for (int i = 0; i < 12; ++i) {
    x.push_back(0.083 * i);
    x.push_back(std::fmod(0.37 * i, 1.0));
    y.push_back(std::sin(3.0 * i));
  }
  gp.set_data(x, y);
  for (int i = 0; i < 12; ++i) {
    const GpPrediction p = gp.predict(&x[2 * i]);
    EXPECT_GE(p.variance, 0.0) << "point " << i;
    EXPECT_LT(p.variance, 1e-6) << "point " << i;
  }
}

}  // namespace
}  // namespace dynamicrad
