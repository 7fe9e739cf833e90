"""The catalogue of user mistakes: each ends with one line naming what is wrong, exit status 2, no traceback.

Every case runs the real command line in-process (cvrun.cli.main, Hydra included) from a
scratch folder. Placeholders in the arguments are filled from the `places` fixture.
"""

import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from cvrun.cli import main
from tests.conftest import write_image_tree

SHAPES_RUN = ["dataset=shapes", "dataset.train_size=100", "dataset.test_size=20", "model=lenet5",
              "trainer.epochs=1", "trainer.progress=false"]
# An image-folder tree's run: SHAPES_RUN without shapes' own keys, which imagefolder refuses.
TREE_RUN = ["dataset=imagefolder", "model=lenet5", "trainer.epochs=1", "trainer.progress=false"]

CATALOGUE = [
    # unknown option in each group
    (["train", "dataset=cifar11"], "unknown dataset 'cifar11'; valid dataset options: cifar10, cifar100"),
    (["train", "model=resnet19"], "unknown model 'resnet19'; valid model options:"),
    (["train", "aug=randaugment"], "unknown aug 'randaugment'; valid aug options:"),
    (["train", "regime=distil"], "unknown regime 'distil'; valid regime options:"),
    (["train", "optim=adagrad"], "unknown optim 'adagrad'; valid optim options: adam, adamw, lamb"),
    (["train", "sched=linear"], "unknown sched 'linear'; valid sched options:"),
    (["train", "experiment=cifar10_lenet"], "unknown experiment 'cifar10_lenet'"),
    # misspelt keys, wrong types, bad values
    (["train", "trainer.epoch=3"], "unknown config key 'trainer.epoch'; did you mean 'trainer.epochs'?"),
    (["train", "optim.learning_rate=0.1"], "unknown config key 'optim.learning_rate'"),
    (["train", "trainer.batch_size=big"], "trainer.batch_size=big: Value 'big' of type 'str' could not be "
                                          "converted to Integer"),
    (["train", "trainer.epochs=0"], "trainer.epochs must be a positive integer, got 0"),
    (["train", "trainer.epochs=-2"], "trainer.epochs must be a positive integer, got -2"),
    (["train", "trainer.batch_size=0"], "trainer.batch_size must be a positive integer, got 0"),
    (["train", "optim.lr=0"], "optim.lr must be positive"),
    (["train", "optim.lr=-1"], "optim.lr must be positive"),
    (["train", "-m", "model=lenet5,nope"], "unknown model 'nope'"),
    (["train", "aug=randaug", "aug.m=31"], "aug.m (RandAugment magnitude) must be in [0, 30], got 31"),
    (["train", "aug.mix=cutmax"], "aug.mix must be null or one of cutmix, mixup, got cutmax"),
    (["train", "dataset.val_fraction=1.5"], "dataset.val_fraction must be in [0, 1)"),
    (["train", "dataset.cache=gpu"], "dataset.cache must be one of auto, none, ram, disk, got gpu"),
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["reproduce", "{missing}"], "{missing} has no config.yaml"),
    (["summarize", "{missing}"], "is not a folder"),
    # data
    (["train", *TREE_RUN, "dataset.root={tree}", "dataset.classes=[cat,dgo]"],
     "dataset.classes: unknown class dgo"),
    (["train", *TREE_RUN, "dataset.root={missing}"], "dataset root {missing} does not exist"),
    (["train", *TREE_RUN, "dataset.root={empty}"], "has no train/ and test/ (or val/) folders"),
    (["train", *TREE_RUN, "dataset.root={unreadable}"], "dataset root {unreadable} is a file"),
    (["train", *TREE_RUN, "dataset.root={corrupt}", "trainer.num_workers=1"],
     "cannot decode image file {corrupt}/train/cat/0003.png; remove it or replace it with a valid image"),
    # teachers
    (["train", *SHAPES_RUN, "regime=distill"], "regime=distill needs regime.teacher"),
    (["train", *SHAPES_RUN, "regime=pseudo_label", "dataset.labeled_per_class=10"],
     "regime=pseudo_label needs regime.teacher"),
    (["train", *SHAPES_RUN, "regime=distill", "regime.teacher={missing}"], "regime.teacher={missing} does not exist"),
    (["train", *SHAPES_RUN, "regime=distill", "regime.teacher={no_checkpoint}"],
     "regime.teacher={no_checkpoint} has no checkpoints/best.pt"),
    (["train", *SHAPES_RUN, "regime=distill", "regime.teacher={source}"], "regime.teacher={source} was trained on "
                                                                          "classes ['circle', 'ring', 'square']"),
    # eval, resume, device
    (["eval", "{empty}"], "{empty} is not a cvrun run folder (no config.yaml)"),
    (["eval", "{truncated}"], "checkpoint {truncated}/checkpoints/best.pt cannot be read (PytorchStreamReader failed "
                              "reading zip archive: failed finding central directory); it is truncated or not a cvrun "
                              "checkpoint"),
    (["train", "trainer.resume={missing}"], "trainer.resume={missing}: no such run folder"),
    (["train", "trainer.resume={empty}"], "trainer.resume={empty} is not a run folder (no config.yaml in it)"),
    (["train", "trainer.resume={source}"], "the run already completed"),
    (["train", "trainer.resume={no_checkpoint}", "model=vgg11"], "carries on the run as it was configured, but "
                                                                 "model.name is lenet5 in the run, vgg11 here"),
    (["train", "trainer.resume={no_checkpoint}", "trainer.epochs=3"], "trainer.epochs is 10 in the run, 3 here"),
    (["train", *SHAPES_RUN, "trainer.device=cuda"], "trainer.device=cuda but this machine has no CUDA device"),
    # a run folder is claimed once
    (["train", *SHAPES_RUN, "hydra.run.dir={source}"], "hydra.run.dir={source} already holds a run (config.yaml); "
                                                       "a run folder is claimed once"),
    (["train", "-m", *SHAPES_RUN, "hydra.sweep.dir={sweep}"], "hydra.sweep.dir={sweep} already holds a sweep"),
    # the command line's grammar
    (["train", "-m", "model=lenet5,"], "'model=lenet5,': a comma list has an empty item; write model=a,b"),
    (["train", "dataset.classes=[cat,dog"], "'dataset.classes=[cat,dog': a bracket is not closed; write a list as "
                                            "dataset.classes=[a,b]"),
    (["train", "epochs="], "unknown config key 'epochs'; did you mean 'trainer.epochs'?"),
    (["train", "trainer.epochs="], "'trainer.epochs=' has no value; write trainer.epochs=VALUE"),
    (["train", "model", "lenet5"], "'model' is not an override; write key=value, e.g. model=lenet5"),
    (["train", "epochs:3"], "'epochs:3' is not an override; write key=value, e.g. trainer.epochs=3"),
    (["train", "modle=lenet5"], "unknown config key 'modle'; did you mean 'model'?"),
    (["train", "zzzz=1"], "unknown config key 'zzzz'; see `cvrun train --cfg job` for all keys"),
    (["check-data", "zzzz=1"], "unknown config key 'zzzz'; see `cvrun check-data --cfg job` for all keys"),
    (["train", "aug.policy=cifar10é"], "outside quotes Hydra reads only ASCII characters; quote the value"),
    # values checked at start
    (["train", "trainer.num_workers=-1"], "trainer.num_workers must be >= 0"),
    (["train", "dataset.std=[0.2,0.2]"], "dataset.std needs one value per colour channel (3"),
    (["train", "dataset.std=[0.2,0.2,0]"], "dataset.std values must be > 0"),
    (["train", "dataset.mean=[0.5]"], "dataset.mean needs one value per colour channel"),
    (["train", "dataset=imagefolder", "trainer.progress=false"], "dataset=imagefolder needs dataset.root"),
    (["train", "dataset.root=null", "trainer.progress=false"], "dataset=cifar10 needs dataset.root"),
    (["train", *SHAPES_RUN, "dataset.image_size=12"], "model=lenet5 cannot take 12 px images (dataset.image_size); "
                                                      "its smallest input is 16 px"),
    (["train", *SHAPES_RUN, "regime=feature_extract", "model.pretrained={source}", "regime.head_layers=4"],
     "regime.head_layers=4, but lenet5 has 3 linear layer(s)"),
    (["train", *SHAPES_RUN, "regime=finetune", "regime.head_layers=0"], "regime.head_layers must be >= 1"),
    (["train", "regime.k=5"], "unknown config key 'regime.k'; regime=scratch takes no keys but its name"),
    (["train", "aug=rotate", "aug.n=5"], "unknown config key 'aug.n'; aug=rotate takes base, padding, hflip, scale, ratio, erase, mix, "
                                         "alpha, prob, degrees, rot90"),
    (["train", "regime=knn", "regime.k=abc"], "regime.k: Value 'abc' of type 'str' could not be converted to Integer"),
    (["train", "logger=[csv,tensorbord]"], "unknown logger 'tensorbord'; valid logger options: csv, "),
    (["train", "trainer.accumulate=0"], "trainer.accumulate (batches per optimiser step) must be >= 1"),
    (["train", "trainer.early_stop_patience=-1"], "trainer.early_stop_patience and trainer.early_stop_min_delta must be"),
    (["train", *SHAPES_RUN, "dataset.classes=[circle]"], "dataset shapes has 1 class (circle); a classifier needs at "
                                                          "least 2"),
    (["train", "trainer.grad_clip=-1"], "trainer.grad_clip (the largest gradient norm) must be > 0 or null"),
    (["train", "sched=step", "sched.milestones=[30,60]"], "sched.milestones are shares of the training"),
    (["eval"], "cvrun eval needs a run folder: cvrun eval RUN_DIR"),
    (["eval", "{source}", "dataset.root="], "'dataset.root=' has no value; write dataset.root=PATH"),
    (["eval", "{source}", "dataset=cifar10"], "dataset=cifar10: eval scores the run on its own dataset; where that "
                                              "data has moved, give dataset.root=DIR"),
    # semi-supervised regimes
    (["train", "regime=fixmatch", "regime.rampup=0.3"], "unknown config key 'regime.rampup'; regime=fixmatch takes "
                                                        "mu, lambda_u, threshold, strong_aug, threshold_mode"),
    (["train", "regime=mean_teacher", "regime.strong_aug=randaug"], "unknown config key 'regime.strong_aug'; "
                                                                    "regime=mean_teacher takes mu, lambda_u, threshold, rampup"),
    (["train", *SHAPES_RUN, "regime=fixmatch"], "regime=fixmatch needs unlabeled images: set dataset.labeled_per_class"),
    (["train", "regime=fixmatch", "regime.threshold_mode=adaptive"], "regime.threshold_mode must be one of fixed, flex"),
    (["train", *SHAPES_RUN, "regime=fixmatch", "dataset.labeled_per_class=10", "regime.strong_aug=randaugment"],
     "regime.strong_aug: unknown aug 'randaugment'; valid aug options:"),
    (["train", *SHAPES_RUN, "regime=fixmatch", "dataset.labeled_per_class=10", "regime.strong_aug=cutmix"],
     "regime.strong_aug=cutmix mixes images"),
    (["train", "regime=fixmatch", "regime.mu=0"], "regime.mu (unlabeled images per labeled one) must be >= 1, got 0"),
    (["train", *SHAPES_RUN, "regime=fixmatch", "dataset.labeled_per_class=10", "aug=cutmix"],
     "regime=fixmatch cannot mix images (aug.mix=cutmix)"),
    # class sets of an image-folder tree
    (["train", *TREE_RUN, "dataset.root={lopsided}"],
     "the class folders of {lopsided}/train and {lopsided}/test differ: test/ lacks dog; train/ lacks fox"),
    (["train", *TREE_RUN, "dataset.root={empty_class}"],
     "class folder {empty_class}/train/dog holds no images; add images to it or remove it"),
    (["train", *TREE_RUN, "dataset.root={tree}", "dataset.classes=[cat,dog,cat]"],
     "dataset.classes names cat more than once"),
    # runs that would not learn
    (["train", *SHAPES_RUN, "dataset.subset=1"], "the training set gives no optimisation step: 1 image(s)"),
    (["train", *SHAPES_RUN, "model=resnet18", "trainer.batch_size=1"], "trainer.batch_size=1 gives steps of a "
                                                                       "single image, on which batch norm cannot train"),
    # reproduce
    (["reproduce", "{source}", "experiment=cifar10_lenet5"], "reproduce takes key=value and group=option overrides"),
    (["reproduce", "{source}", "model=lenet6"], "unknown model 'lenet6'; valid model options:"),
    # issue 23: training loop, early stopping, EMA, resume
    (["train", *SHAPES_RUN, "dataset.val_fraction=0", "trainer.early_stop_patience=2"],
     "trainer.early_stop_patience=2 stops on the validation top-1, but this run has no validation split"),
    # issue 23: sweeps, folders, the command line
    (["train", "-m", *SHAPES_RUN, "hydra.sweep.dir={source}"], "hydra.sweep.dir={source} holds a run (config.yaml); "
                                                               "a sweep needs a folder of its own"),
    (["train", *SHAPES_RUN, "hydra.run.dir={sweep}"], "hydra.run.dir={sweep} holds a sweep (multirun.yaml); a run "
                                                      "needs a folder of its own"),
    (["train", "-m", *SHAPES_RUN, "hydra.sweep.dir={unreadable}"], "hydra.sweep.dir={unreadable} is a file; name a "
                                                                   "folder for the sweep"),
    (["train", "-m", *SHAPES_RUN, "hydra/sweeper=optuna", "optim.lr=interval(0.5,0.1)"],
     "optim.lr=interval(0.5,0.1): the interval's start is above its end; write interval(0.1, 0.5)"),
    (["train", "-m", *SHAPES_RUN, "hydra/sweeper=optuna", "trainer.label_smoothing=tag(log,interval(0,0.2))"],
     "a log scale needs an interval above 0, not from 0"),
    (["train", "-m", "hparams_search=optim_optuna", "hparams_search.pruner_startup_trials=10",
      "hparams_search.pruner_warmup_epochs=0"], "hparams_search.pruner_warmup_epochs must be >= 1, got 0"),
    # issue 23: data sources, teachers, checks before the run folder
    (["train", *TREE_RUN, "dataset.root={tree}", "dataset.unlabeled_root={tree}/test",
      "regime=fixmatch", "dataset.labeled_per_class=2"],
     "dataset.unlabeled_root={tree}/test overlaps the test split: 6 of its images are test images"),
    (["train", *SHAPES_RUN, "dataset.unlabeled_root={missing}"], "dataset.unlabeled_root {missing} is not a folder"),
    (["train", *SHAPES_RUN, "model.pretrained=imagenet"], "torchvision has no ImageNet weights for lenet5"),
    (["train", *SHAPES_RUN, "trainer.precision=16", "trainer.device=cpu"],
     "trainer.precision=16 (fp16 mixed precision) needs CUDA"),
    (["train", *SHAPES_RUN, "regime=finetune", "model=mlp", "model.pretrained={source}"],
     "model.pretrained={source} is a lenet5, but model=mlp"),
    (["train", *SHAPES_RUN, "regime=distill", "regime.teacher={source}", "dataset.classes=[circle,ring,square]",
      "dataset.image_size=40"], "regime.teacher={source} was trained on 32 px images, this run uses 40 px"),
    (["train", *SHAPES_RUN, "regime=fixmatch", "dataset.labeled_per_class=50"],
     "dataset.labeled_per_class keeps every training image labeled (the largest class, "),
    (["train", *SHAPES_RUN, "regime=knn", "regime.features=pixels", "regime.k=500"],
     "regime.k=500 neighbours, but the training set holds 90 images to vote; set regime.k to at most 90"),
    # issue 23: loggers, predict
    (["train", *SHAPES_RUN, "+logger=mlflow", "logger.mlflow.timeout=0"],
     "logger.mlflow.timeout must be a positive number of seconds, got 0"),
    (["predict", "{empty}/model.pt2", "{tree}/test"], "{empty}/model.pt2: predict reads run folders and .onnx files"),
    (["predict", "{source}", "{tree}/test", "--out", "{empty}"], "--out {empty} is a folder; name the CSV file"),
    # issue 26: calibrate, predict
    (["calibrate", "{empty}"], "{empty} is not a cvrun run folder (no config.yaml)"),
    (["calibrate", "{truncated}"], "checkpoint {truncated}/checkpoints/best.pt cannot be read"),
    (["calibrate", "{source}", "split=test"], "split=test is not a setting of cvrun calibrate; its settings say "
                                              "where the run's data is now: dataset.root=DIR"),
    (["calibrate", "{source}", "dataset.pth=x"], "dataset.pth is not where the data of a dataset=shapes run lies; "
                                                 "give its new place with dataset.cache_dir=..., dataset.root=..."),
    (["predict", "{source}", "{tree}/test", "--min-confidence", "2"], "--min-confidence 2 is not a probability; "
                                                                     "use a value from 0 to 1, such as 0.9"),
    # issue 26: compare
    (["compare", "{empty}"], "no runs under {empty} (a run folder holds a summary.json)"),
    (["compare", "{source}", "--by", "model", "--baseline", "resnet18"],
     "--baseline resnet18 names no setting; settings (model.name): lenet5"),
    (["compare", "{source}", "--metric", "test_acc9"], "--metric test_acc9: no completed run has it in summary.json; "
                                                       "numeric results: "),
    (["compare", "{source}", "--format", "pdf"], "compare: argument --format: invalid choice: 'pdf'"),
    (["compare", "{source}", "--by", "optim.learning_rate"], "--by optim.learning_rate: no run has this config key"),
    (["train", "trainer.seeds=3"], "trainer.seeds=3 is a sweep of 3 runs (seeds 0-2); add -m: "
                                   "cvrun train -m ... trainer.seeds=3"),
    (["train", "-m", "trainer.seeds=0"], "trainer.seeds must be a positive integer (how many seeds: trainer.seeds=5 "
                                         "runs seeds 0-4), got 0"),
    (["train", "-m", "trainer.seeds=3", "trainer.seed=1"], "give trainer.seeds=3 (seeds 0-2) or trainer.seed, not both"),
    # issue 24: option schemas
    (["train", "model=lenet5", "model.hidden=[64]"],
     "unknown config key 'model.hidden'; model=lenet5 takes pretrained, small_input, dropout, drop_path"),
    (["train", "optim=sgd", "optim.betas=[0.9,0.99]"],
     "unknown config key 'optim.betas'; optim=sgd takes lr, weight_decay, momentum, nesterov"),
    (["train", "dataset=cifar10", "dataset.train_size=5"],
     "unknown config key 'dataset.train_size'; dataset=cifar10 takes root, download, image_size,"),
    (["train", "sched=cosine", "sched.milestones=[0.5]"],
     "unknown config key 'sched.milestones'; sched=cosine takes warmup_epochs, min_lr"),
    (["train", "model=mlp", "model.hidden=[]"], "model.hidden needs one positive width per hidden layer"),
    (["train", "dataset=shapes", "dataset.test_size=0"], "dataset.train_size and dataset.test_size must be positive"),
    (["train", "optim=adam", "optim.betas=[0.9]"], "optim.betas must be two values in [0, 1), e.g. [0.9,0.999]"),
    (["train", "sched=cosine_restarts", "sched.period_epochs=0"], "sched.period_epochs must be positive, got 0.0"),
    (["train", "sched=onecycle", "sched.warmup_epochs=1"], "sched=onecycle warms up for sched.pct_start of the run"),
    (["train", "sched=adam"], "unknown sched 'adam'; valid sched options: cosine, cosine_restarts, fixmatch_cosine,"),
    # issue 25: transforms
    (["train", "dataset.crop_pct=0"], "dataset.crop_pct (the share of the resized image evaluated) must be in (0, 1], "
                                      "got 0.0"),
    (["train", "dataset.crop_pct=1.5"], "dataset.crop_pct (the share of the resized image evaluated) must be in "
                                        "(0, 1], got 1.5"),
    (["train", "dataset.interpolation=cubic"],
     "dataset.interpolation must be one of nearest, bilinear, bicubic, area, got cubic"),
    (["train", "dataset.image_size=224", "dataset.stored_size=200"],
     "dataset.stored_size (the shorter side images are kept at) must be null or >= dataset.image_size (224), got 200"),
    (["train", "aug=basic", "aug.ratio=[2,1]"],
     "aug.ratio (the box's width / height) must be [low, high] with 0 < low <= high, got [2.0, 1.0]"),
    (["train", "aug=basic", "aug.scale=[0,1]"], "aug.scale must be [low, high] with 0 < low <= high <= 1, got [0.0, 1.0]"),
    # issue 25: imbalance
    (["train", *SHAPES_RUN, "trainer.class_weights=[1,2]"],
     "trainer.class_weights has 2 weights, but the data has 5 classes: give one weight per class"),
    (["train", "trainer.class_weights=heavy"],
     "trainer.class_weights must be none, balanced or one weight per class ([1.0,2.0,...]), got heavy"),
    (["train", "trainer.monitor=val_acc"],
     "trainer.monitor must be one of val_acc1, val_balanced_acc1, val_macro_f1, val_loss, got val_acc"),
    (["train", "dataset.sampler=oversample"], "dataset.sampler must be one of none, balanced, got oversample"),
    (["train", "dataset.imbalance_ratio=0.5"],
     "dataset.imbalance_ratio (largest class over smallest) must be >= 1 or null, got 0.5"),
    (["train", *SHAPES_RUN, "dataset.val_fraction=0", "trainer.monitor=val_loss"],
     "trainer.monitor=val_loss chooses best.pt by the validation loss, but this run has no validation split"),
    (["train", *SHAPES_RUN, "regime=knn", "regime.features=pixels", "trainer.class_weights=balanced"],
     "regime=knn takes no trainer.class_weights: it trains nothing; leave trainer.class_weights=none"),
    # issue 24: api, wandb
    (["train", *SHAPES_RUN, "+logger=wandb", "logger.wandb.mode=offlin"],
     "logger.wandb.mode=offlin is not a W&B mode; use one of offline, online, disabled"),
    # issue 24: config folders
    (["train", "--config-dir", "{missing}", "model=lenet5"], "--config-dir: {missing} does not exist; name a folder"),
    (["train", "--config-dir={unreadable}", "model=lenet5"], "--config-dir: {unreadable} is a file; name a folder"),
    (["train", "model=lenet5", "-cd"], "-cd needs a value: -cd FOLDER"),
    (["train", "hydra.searchpath=[pkg://tests.user_configs]", "experiment=shapes_quik"],
     "; did you mean 'shapes_quick'?"),
    (["train", "hydra.searchpath=[pkg://tests.user_configs]", "model=lenet5_dropuot"],
     "unknown model 'lenet5_dropuot'; valid model options: alexnet, "),
    (["train", "hydra.searchpath=[http://example.com/conf]"], "hydra.searchpath entry 'http://example.com/conf': "
                                                              "write file://FOLDER (a folder of YAMLs) or pkg://PACKAGE"),
    (["train", "hydra.searchpath=[pkg://no_such_package]"], "hydra.searchpath entry 'pkg://no_such_package': "
                                                            "package no_such_package cannot be imported"),
    (["train", "-m", "model=lenet5", "--cfg", "job"], "-m and --cfg cannot be given together: Hydra runs one of"),
    # issue 24: timm
    (["train", "model=timm", "model.arch=convnext_attto"],
     "model.arch=convnext_attto is not an architecture timm knows; did you mean convnext_atto"),
    (["train", "model=timm"], "model.arch must be set: add model.arch=... to the command"),
    (["train", "model=timm", "model.arch=test_resnet", "model.pretrained=imagenet"],
     "model.pretrained=imagenet names torchvision's weights; timm's are model.pretrained=hub"),
    (["train", "model=timm", "model.arch=convnext_atto_rms", "model.pretrained=hub"],
     "model.pretrained=hub: timm has no pretrained weights of convnext_atto_rms to download"),
    (["train", "model=timm", "model.arch=test_resnet", "model.kwargs={{num_classes:3}}"],
     "model.kwargs.num_classes is cvrun's to set (the class count comes from the data); drop it"),
    (["train", *[arg for arg in SHAPES_RUN if arg != "model=lenet5"], "model=timm", "model.arch=test_resnet",
      "regime=finetune", "model.pretrained={source}"],
     "model.pretrained={source} is a lenet5, but model=timm model.arch=test_resnet; use model=lenet5"),
    # issue 25: csv, hf sources
    (["train", "dataset=csv", "dataset.path={tree}/missing.csv", *TREE_RUN[1:]],
     "missing.csv line 3: image {tree}/train/cat/gone.png does not exist; fix the path"),
    (["train", "dataset=csv", "dataset.path={tree}/unknown.csv", "dataset.split_column=split", *TREE_RUN[1:]],
     "unknown.csv line 4: label 'cow' is not a class of the training rows (cat, dog); fix the label"),
    (["train", "dataset=csv", "dataset.path={tree}/columns.csv", *TREE_RUN[1:]],
     "columns.csv has no column 'path' (its columns: file, label); set dataset.path_column to the column"),
    (["train", "dataset=csv", *TREE_RUN[1:]], "dataset=csv needs dataset.path: the CSV or TSV file"),
    (["train", "dataset=hf", "dataset.path={empty}", *TREE_RUN[1:]],
     "dataset.path={empty} is not a Hugging Face dataset: it holds no save_to_disk files"),
    (["train", "dataset=hf", "dataset.path={hf}", "dataset.image_column=img", *TREE_RUN[1:]],
     "the train split of {hf} has no column 'img' (its columns: image, label); set dataset.image_column"),
    # issue 25: check-data
    (["check-data", "near_treshold=4"], "unknown config key 'near_treshold'; did you mean 'near_threshold'?"),
    (["check-data", "near_threshold=65"], "near_threshold (the bits in which two images' 64-bit perceptual hashes "
                                          "may differ, for near duplicates) must be in [0, 64], got 65"),
    (["check-data", "pairs=-1"], "pairs (the closest pairs pictured) must be >= 0, got -1"),
    (["check-data", "dataset=imagefolder", "dataset.root={tree}", "out={tree}/report"],
     "out={tree}/report is inside the data ({tree}); check-data never writes there"),
    # issue 25: shards
    (["train", "dataset=shards", "dataset.shards={shards}/train-{{000..001}}.tar", *TREE_RUN[1:]],
     "dataset.shards={shards}/train-{{000..001}}.tar: no file {shards}/train-000.tar (and 1 more of the 2 it names)"),
    (["train", "dataset=shards", "dataset.shards={shards}/no_cls.tar", *TREE_RUN[1:]],
     "{shards}/no_cls.tar has no .cls members (a class index per sample)"),
    (["train", "dataset=shards", "dataset.shards={shards}/good.tar", "dataset.test_shards={shards}/range.tar",
      *TREE_RUN[1:]], "range.tar/1.cls holds class 5, out of range for the 2 classes of {shards}/classes.txt"),
    (["train", "dataset=shards", *TREE_RUN[1:]], "dataset=shards needs dataset.shards: a brace pattern"),
    (["train", "dataset=shards", "dataset.shards={shards}/good.tar", "dataset.cache=ram", *TREE_RUN[1:]],
     "dataset.cache=ram: dataset=shards reads each image from its tar file when it is used and keeps no cache"),
    (["shard", "{missing}", "{empty}/out"], "{missing} does not exist; name an image-folder tree"),
]


@pytest.fixture(scope="session")
def hf_dataset(tmp_path_factory) -> Path:
    """A Hugging Face dataset written by save_to_disk: train and test splits of an image and a label column."""
    import datasets

    folder = tmp_path_factory.mktemp("hf") / "saved"
    image = {"bytes": cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), "path": None}
    split = datasets.Dataset.from_dict({"image": [image] * 4, "label": [0, 1, 0, 1]}, features=datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])}))
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(folder))
    return folder


@pytest.fixture
def places(tmp_path, source_run, hf_dataset):
    """The folders the catalogue's arguments name, each broken in its own way."""
    tree = write_image_tree(tmp_path / "tree", {"cat": 6, "dog": 6})
    # Labels files of the tree, each with one mistake.
    (tree / "missing.csv").write_text("path,label\ntrain/cat/0000.png,cat\ntrain/cat/gone.png,cat\n")
    (tree / "unknown.csv").write_text("path,label,split\ntrain/cat/0000.png,cat,train\ntrain/dog/0000.png,dog,train\n"
                                      "test/cat/0000.png,cow,test\n")
    (tree / "columns.csv").write_text("file,label\ntrain/cat/0000.png,cat\n")
    corrupt = write_image_tree(tmp_path / "corrupt", {"cat": 6, "dog": 6})
    (corrupt / "train" / "cat" / "0003.png").write_bytes(b"this is not a PNG")
    empty = tmp_path / "empty"
    empty.mkdir()
    unreadable = tmp_path / "cifar10.tar.gz"  # a file where a folder belongs: unreadable as a dataset root
    unreadable.write_bytes(b"\x1f\x8b")
    no_checkpoint = tmp_path / "no_checkpoint"
    no_checkpoint.mkdir()
    shutil.copy(source_run / "config.yaml", no_checkpoint / "config.yaml")
    lopsided = write_image_tree(tmp_path / "lopsided", {"cat": 3, "dog": 3})
    (lopsided / "test" / "dog").rename(lopsided / "test" / "fox")
    empty_class = write_image_tree(tmp_path / "empty_class", {"cat": 3, "dog": 3})
    for image in (empty_class / "train" / "dog").iterdir():
        image.unlink()
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    truncated = tmp_path / "truncated"
    shutil.copytree(source_run, truncated)
    best = truncated / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:1000])
    return {"tree": tree, "corrupt": corrupt, "empty": empty, "unreadable": unreadable, "missing": tmp_path / "nope",
           "no_checkpoint": no_checkpoint, "truncated": truncated, "source": source_run, "lopsided": lopsided,
           "empty_class": empty_class, "sweep": sweep, "hf": hf_dataset, "shards": bad_shards(tmp_path / "shards")}


def bad_shards(folder: Path) -> Path:
    """good.tar (4 samples of classes 0 and 1, named in classes.txt), no_cls.tar (an image without its class) and
    range.tar (a class 5)."""
    from tests.data.test_shards import write_tar

    folder.mkdir()
    image = np.zeros((8, 8, 3), np.uint8)
    write_tar(folder / "good.tar", [(str(i), image, i % 2) for i in range(4)])
    write_tar(folder / "range.tar", [("0", image, 0), ("1", image, 5)])
    with tarfile.open(folder / "no_cls.tar", "w") as tar:
        tar.add(folder / "good.tar", arcname="0.png")
    (folder / "classes.txt").write_text("a\nb\n")
    return folder


def test_the_catalogue_has_at_least_sixty_mistakes():
    assert len(CATALOGUE) >= 60


@pytest.mark.parametrize("args, expected", CATALOGUE, ids=[" ".join(a[1:2] + a[-1:]) for a, _ in CATALOGUE])
def test_mistake_is_one_line_and_exit_2(args, expected, places, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    filled = [arg.format(**places) for arg in args]
    assert main(filled) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("cvrun: error: "), err
    assert expected.format(**places) in lines[-1]
    assert "Traceback" not in err and len([line for line in lines if "error" in line.lower()]) == 1, err
