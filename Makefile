# Two commands do all the set-up:  `make test`  and  `make demo [DATA=dir]`.
PY      := .venv/bin/python
DATA    ?= gtzan
WORK    ?= work/$(notdir $(abspath $(DATA)))
GENRES  ?= classical,country,disco,hiphop,jazz,metal,pop,reggae
# The shipped course split on gtzan/; a stratified random split on any other folder (gtzan_mini has no lists).
SPLIT   ?= $(if $(filter gtzan gtzan/,$(DATA)),course,random)
SPLIT_FLAGS ?= $(if $(filter random,$(SPLIT)),--val-per-class 1 --test-per-class 2,--val-per-class 5)
AUGMENT ?= noise,shift,stretch,pitch
MODEL   ?= base2dcnn
EPOCHS  ?= 20
WORKERS ?= 2
RUN     ?= runs/demo-$(MODEL)

.PHONY: test demo bench cv clean
.venv/done: requirements.txt
	python3 -m venv .venv
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps musicnn==0.1.0   # its weight files only; TensorFlow is never needed
	$(PY) -c "from genreclf.augment import warm_up; warm_up()"   # pay librosa's numba compilation once, here
	touch $@

test: .venv/done
	$(PY) -m pytest -q tests

demo: .venv/done
	$(PY) split_data.py --data-dir $(DATA) --work-dir $(WORK) --split $(SPLIT) --genres $(GENRES) $(SPLIT_FLAGS) \
		$(if $(wildcard $(DATA)/wav),,--download)
	$(PY) dataset.py --data-dir $(DATA) --work-dir $(WORK) --augment $(AUGMENT) --workers $(WORKERS)
	$(PY) main.py --data-dir $(DATA) --work-dir $(WORK) --model $(MODEL) --epochs $(EPOCHS) --do_train --do_test --out $(RUN)

bench: .venv/done
	$(PY) bench.py

clean:
	rm -rf work runs .pytest_cache

# k-fold table of the README: every model family on gtzan_mini (8 genres), 5 folds by track.
CV_WORK ?= work/cv-$(notdir $(abspath $(DATA)))
CV_FLAGS ?= --folds 5 --seed 0
cv: .venv/done
	$(PY) split_data.py --data-dir $(DATA) --work-dir $(CV_WORK) --split random --genres $(GENRES) $(SPLIT_FLAGS)
	$(PY) dataset.py --data-dir $(DATA) --work-dir $(CV_WORK) --workers $(WORKERS)
	$(PY) dataset.py --data-dir $(DATA) --work-dir $(CV_WORK) --workers $(WORKERS) --features musicnn
	for spec in baseline:20 q1:20 base2dcnn:20 q2:30 resnet18:6 resnet34_musicnn:6 vgg13:3; do \
		m=$${spec%%:*}; e=$${spec##*:}; \
		$(PY) main.py --data-dir $(DATA) --work-dir $(CV_WORK) --model $$m --epochs $$e $(CV_FLAGS) --out runs/cv-$$m || exit 1; \
	done
