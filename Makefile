# Set-up and everyday commands. `make demo` trains a small experiment; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test test-learning clean

install: $(STAMP)

# One pip call resolves everything under the pinned constraints (torch CPU build, mujoco 3.3.0
# that metaworld needs): installing packages one after another can leave a broken `import mujoco`.
$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[all]'
	$(BIN)/python -c "import torch, pyro, gymnasium, mujoco, metaworld, mlflow; print('installed: torch', torch.__version__, '| mujoco', mujoco.__version__, '| mlflow', mlflow.__version__)"
	touch $(STAMP)

demo: install
	$(BIN)/pearl train experiments/quickstart.yaml

test: install
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treating it as a failure"; fi; \
	exit $$rc

# The point-robot learning test: point_robot_fast_explore.yaml trained on 3 seeds, about 11 minutes each.
test-learning: install
	$(BIN)/python -m pytest --runslow -s $(PYTEST_ARGS) tests/learning/test_point_robot.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
