// Trial CSVs and convergence pictures for `dynamicrad tune`: pictures from a tuning result, or
// averaged over trial CSVs (several seeds, several methods: bo, random and the tpe.csv of
// scripts/compare_tpe.py), and the best trials of a CSV.
#pragma once

#include <string>
#include <vector>

#include "dynamicrad/tune.h"

namespace dynamicrad::cli {

// One panel per cell, one series per method that ran (BO, random search).
void write_result_plot(const std::string& path, const TuneResult& result, const std::string& title);

// Reads trial CSVs (write_trials_csv's columns; only cell, method, trial and loss are used),
// averages each (cell, method)'s best-so-far curve over the files that hold it (up to the shortest
// of those curves, and to max_trials when > 0) and draws one panel per cell. Throws
// dynamicrad::Error naming a bad file.
void write_csv_plot(const std::string& path, const std::vector<std::string>& csv_files,
                    const std::string& title, std::size_t max_trials);

// The best BO trial of each cell of a trials CSV, with its parameters and loss (cells in file
// order). Throws dynamicrad::Error naming the file and line of a bad row.
std::vector<TrialRecord> best_trials_from_csv(const std::string& csv_file);

}  // namespace dynamicrad::cli
