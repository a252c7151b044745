# Two commands do all the set-up:  `make test`  and  `make demo [DATA=dir]`.
PY      := .venv/bin/python
DATA    ?= gtzan
WORK    ?= work/$(notdir $(abspath $(DATA)))
GENRES  ?= classical,country,disco,hiphop,jazz,metal,pop,reggae
# auto: the shipped course split when DATA holds GTZAN's file names (whatever the folder is called) and
# the course lists cover every genre there; else a stratified random split. split_data.py says which and why.
SPLIT   ?= auto
SPLIT_FLAGS ?= $(if $(filter random,$(SPLIT)),--val-per-class 1 --test-per-class 2,)
AUGMENT ?= noise,shift,stretch,pitch
MODEL   ?= base2dcnn
EPOCHS  ?= 20
WORKERS ?= 2
RUN     ?= runs/demo-$(MODEL)

.PHONY: test demo bench cv clean gpu-check
.venv/done: requirements.txt
	python3 -m venv .venv
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps musicnn==0.1.0   # its weight files only; TensorFlow is never needed
	$(PY) -c "from genreclf.augment import warm_up; warm_up()"   # pay librosa's numba compilation once, here
	touch $@

# Two test processes (pytest-xdist) of one torch thread each: on cores that other jobs share, torch's
# threads spin waiting for cores they do not get (a q2 epoch took 21 s with 2 threads and 1.3 s with 1
# under five jobs), while two processes keep both cores busy through the tests' many script start-ups.
test: .venv/done
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 tests

demo: .venv/done
	$(PY) split_data.py --data-dir $(DATA) --work-dir $(WORK) --split $(SPLIT) --genres $(GENRES) $(SPLIT_FLAGS) \
		$(if $(filter gtzan gtzan/,$(DATA))$(if $(wildcard $(DATA)/wav),,none),--download)
	$(PY) dataset.py --data-dir $(DATA) --work-dir $(WORK) --augment $(AUGMENT) --workers $(WORKERS)
# a second `make demo` continues (or, when finished, re-tests) the run in $(RUN) instead of training over it
	$(PY) main.py $(if $(wildcard $(RUN)/last.pt),--resume $(RUN) --do_test,--data-dir $(DATA) --work-dir $(WORK) \
		--model $(MODEL) --epochs $(EPOCHS) --do_train --do_test --out $(RUN))

bench: .venv/done
	$(PY) bench.py

# Every CUDA path on this machine's GPUs, under 5 minutes; one line and exit 0 where there is no GPU.
gpu-check: .venv/done
	$(PY) gpu_check.py

clean:
	rm -rf work runs .pytest_cache

# k-fold table of docs/splits-and-evaluation.md: artist-grouped folds on gtzan_mini + gtzan_dev (187 real clips, 10 genres),
# joined as symbolic links under work/ (no audio is copied). Extend the table by adding model:epochs specs:
#   make cv CV_MODELS="baseline:20 resnet18:6"
CV_SHARED ?= ../shared/data
CV_DATA   ?= work/gtzan187
CV_MODELS ?= baseline:20 base2dcnn:20 q2:30
CV_FLAGS  ?= --folds 5 --seed 0
cv: cv-data
	for spec in $(CV_MODELS); do \
		m=$${spec%%:*}; e=$${spec##*:}; \
		$(PY) main.py --data-dir $(CV_DATA) --model $$m --epochs $$e $(CV_FLAGS) --out runs/cv-$$m || exit 1; \
	done

# The training-recipe table (the README's results, docs/training-recipe.md, issues #13 and #21): the classic baselines, the seed's
# recipe and the new one, heads on richer musicnn embeddings, the fine-tuned musicnn and ensembles, on the
# artist-grouped folds of `cv`; rows and flags are in recipe_table.py, which skips the rows whose
# runs/cv-recipe/<row>/results.json exists and makes the other caches its rows name. Table: runs/cv-recipe/table.md.
# cv-data links the 187 clips, splits them by artist and caches mel and musicnn features (for cv too).
.PHONY: cv-data cv-recipe pretrained
cv-data: .venv/done
	for g in blues classical country disco hiphop jazz metal pop reggae rock; do mkdir -p $(CV_DATA)/wav/$$g; \
		for f in $(abspath $(CV_SHARED))/gtzan_mini/wav/$$g/*.wav $(abspath $(CV_SHARED))/gtzan_dev/wav/$$g/*.flac; do \
			ln -sfn $$f $(CV_DATA)/wav/$$g/; done; done
	$(PY) split_data.py --data-dir $(CV_DATA) --split random --group-by artist
	$(PY) dataset.py --data-dir $(CV_DATA) --workers $(WORKERS)
	$(PY) dataset.py --data-dir $(CV_DATA) --workers $(WORKERS) --features musicnn
RECIPE_OUT ?= runs/cv-recipe
cv-recipe: cv-data
	$(PY) recipe_table.py --data-dir $(CV_DATA) --out $(RECIPE_OUT)

# The shipped default model (pretrained/, docs/predict.md): the best row of the
# recipe table, trained on all 187 clips on CPU; prints its size, time and SHA-256, which it writes beside
# the file (pretrained/genre_musicnn.pt.sha256, checked by genreclf/pretrained.py on every load).
PRETRAINED_FEATURES ?= --layers max_pool,mean_pool,penultimate,taggram --patch-stats mean,std:max_pool
PRETRAINED_FLAGS ?= --model musicnn_logreg --seed 0
pretrained: cv-data   # one thread: the same float sums in the same order, hence the same bytes
	OMP_NUM_THREADS=1 $(PY) dataset.py --data-dir $(CV_DATA) --workers $(WORKERS) --features musicnn $(PRETRAINED_FEATURES)
	OMP_NUM_THREADS=1 $(PY) -m genreclf.pretrained --data-dir $(CV_DATA) $(PRETRAINED_FLAGS) $(PRETRAINED_FEATURES)
