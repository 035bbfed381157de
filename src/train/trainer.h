// `remora train`: supervised fine-tuning with every method (RLOO for ReMix), resumable.
#pragma once

#include "train/recipe.h"

namespace remora {

// Runs the recipe. With `resume`, continues from the newest checkpoint in output.dir so that the
// run ends as an uninterrupted one would (bit-exact with one thread). Returns the exit status:
// 0 done, 130 stopped by SIGINT/SIGTERM after saving a checkpoint. Throws Error for bad input and
// for a non-finite loss (the last good checkpoint is kept).
int run_training(const Recipe& recipe, bool resume);

}  // namespace remora
