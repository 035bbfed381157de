// `remora train`: run a YAML recipe (with key=value overrides); --resume continues a stopped run.
#include <cstdlib>
#include <iostream>

#include "cli/common.h"
#include "train/recipe.h"
#include "train/trainer.h"

namespace remora {
namespace {

struct TrainOptions {
  std::string recipe;
  std::vector<std::string> overrides;
  bool resume = false;
  bool help_recipe = false;
};

void run_train(const TrainOptions& options) {
  if (options.help_recipe) {
    std::cout << "recipe keys (default): meaning\n" << recipe_reference();
    return;
  }
  if (options.recipe.empty()) throw CLI::RequiredError("RECIPE");
  const int status = run_training(Recipe::load(options.recipe, options.overrides), options.resume);
  if (status != 0) std::exit(status);
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto options = std::make_shared<TrainOptions>();
  CLI::App* command = app.add_subcommand(
      "train", "Fine-tune with a YAML recipe: remora train RECIPE.yaml [key=value ...] [--resume]");
  command->add_option("recipe", options->recipe, "recipe YAML file (configs/ has one per method)");
  command->add_option("overrides", options->overrides, "recipe overrides such as optim.lr=1e-4 train.steps=50");
  command->add_flag("--resume", options->resume, "continue from the newest checkpoint in output.dir");
  command->add_flag("--help-recipe", options->help_recipe, "list every recipe key with its default");
  command->callback([options] { run_train(*options); });
}

}  // namespace remora
