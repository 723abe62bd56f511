# The hostile-input table: what a correct whtlm does with corrupt, extreme and
# malformed input. Sourced by run.sh; the DSL is in README.md. In short:
#   group NAME                       the TSV's group of the cases that follow
#   given 'SHELL'                    setup in the case's folder (lib.sh helpers; $FIX)
#   allow PATH...  watch PATH...     paths that may change / extra paths to snapshot
#   check 'SHELL'  limit SECONDS     must succeed afterwards ($OUT $ERR $RC) / timeout
#   hcase ID error|ok|safe [WORD...] -- whtlm ARGS...     or  --sh 'SHELL'
# error: non-zero exit, a message holding every WORD (case-insensitive; a|b: either);
# ok: exit 0 and the check passes; safe: either of those. Every case folder starts
# with the user's small.txt and val.txt; any file there before the command that
# changes or goes (other than allowed paths) is data loss.
# shellcheck shell=bash disable=SC2016  # $ in single quotes expands later, in the case

TINY=(--preset tiny --layers 1 --d-model 64 --heads 2)
TRAIN=(train "${TINY[@]}" --seq 32 --batch 2 --data small.txt --chunk-tokens 256 --eval-batches 1 --quiet)
EVAL=(eval --data small.txt --split all --max-windows 1 --threads 1)
GEN=(generate --max-new-tokens 4 --threads 1)
BT=(bench train --preset tiny --proj dense --batch 1 --seq 8 --vocab 256 --reps 1 --steps 1)
BI=(bench infer --preset tiny --proj dense --batch 1 --prompt 8 --decode 2 --reps 1 --vocab 256 --context 16)
BF=(bench fwht --sizes 256 --rows 1 --reps 1 --min-time 0.001 --no-dense)
EXP=(experiment --config plan.json --no-bench --quiet)
TOKB=(tokenizer bench --tokenizer tok.json --data small.txt --reps 1)
PREP=(data prepare --data small.txt --chunk-tokens 256)

# ==== --threads: every command that has it, and through the files that carry it ======
# A correct whtlm refuses a thread count it cannot create (libgomp crashes above
# ~65,500 and fails from ~700), naming the option and the value.
group threads
hcase train-threads-70000 error --threads 70000 -- whtlm "${TRAIN[@]}" --steps 1 --threads 70000 --out r
hcase train-threads-1000 error --threads 1000 -- whtlm "${TRAIN[@]}" --steps 1 --threads 1000 --out r
hcase train-threads-neg error --threads -1 -- whtlm "${TRAIN[@]}" --steps 1 --threads -1 --out r
hcase train-threads-1 ok -- whtlm "${TRAIN[@]}" --steps 1 --threads 1 --out r
given 'fixture ck-llama'
hcase eval-threads-70000 error --threads 70000 -- whtlm "${EVAL[@]}" --checkpoint ck-llama --threads 70000
given 'fixture ck-llama'
hcase eval-threads-1000 error --threads 1000 -- whtlm "${EVAL[@]}" --checkpoint ck-llama --threads 1000
given 'fixture ck-llama'
hcase eval-threads-neg error --threads -1 -- whtlm "${EVAL[@]}" --checkpoint ck-llama --threads -1
given 'fixture ck-llama'
hcase gen-threads-70000 error --threads 70000 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --threads 70000
given 'fixture ck-llama'
hcase gen-threads-1000 error --threads 1000 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --threads 1000
given 'fixture ck-llama'
hcase gen-threads-neg error --threads -1 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --threads -1
given 'fixture ck-llama'
hcase gen-threads-2 ok -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --threads 2
hcase toktrain-threads-70000 error --threads 70000 -- whtlm tokenizer train --vocab 280 --data small.txt --out t.json --quiet --threads 70000
hcase toktrain-threads-1000 error --threads 1000 -- whtlm tokenizer train --vocab 280 --data small.txt --out t.json --quiet --threads 1000
hcase toktrain-threads-neg error --threads -1 -- whtlm tokenizer train --vocab 280 --data small.txt --out t.json --quiet --threads -1
hcase encode-threads-70000 error --threads 70000 --sh 'whtlm tokenizer encode --threads 70000 <small.txt'
hcase encode-threads-1000 error --threads 1000 --sh 'whtlm tokenizer encode --threads 1000 <small.txt'
hcase encode-threads-neg error --threads -1 --sh 'whtlm tokenizer encode --threads -1 <small.txt'
given 'fixture tok.json'
hcase tokbench-threads-70000 error --threads 70000 -- whtlm "${TOKB[@]}" --threads 70000
given 'fixture tok.json'
hcase tokbench-threads-1000 error --threads 1000 -- whtlm "${TOKB[@]}" --threads 1000
given 'fixture tok.json'
hcase tokbench-threads-neg error --threads -1 -- whtlm "${TOKB[@]}" --threads 1,-1
hcase prepare-threads-70000 error --threads 70000 -- whtlm "${PREP[@]}" --out p --threads 70000
hcase prepare-threads-1000 error --threads 1000 -- whtlm "${PREP[@]}" --out p --threads 1000
hcase prepare-threads-neg error --threads -1 -- whtlm "${PREP[@]}" --out p --threads -1
given 'fixture plan.json'
hcase exp-threads-70000 error --threads 70000 -- whtlm "${EXP[@]}" --out e --threads 70000
given 'fixture plan.json'
hcase exp-threads-1000 error --threads 1000 -- whtlm "${EXP[@]}" --out e --threads 1000
given 'fixture plan.json'
hcase exp-threads-neg error --threads -2 -- whtlm "${EXP[@]}" --out e --threads -2
hcase fwht-threads-70000 error --threads 70000 -- whtlm "${BF[@]}" --threads 70000
hcase fwht-threads-1000 error --threads 1000 -- whtlm "${BF[@]}" --threads 1000
hcase fwht-threads-neg error --threads -1 -- whtlm "${BF[@]}" --threads -1
hcase fwht-threads-1-2 ok -- whtlm "${BF[@]}" --threads 1,2
hcase btrain-threads-70000 error --threads 70000 -- whtlm "${BT[@]}" --threads 70000
hcase btrain-threads-1000 error --threads 1000 -- whtlm "${BT[@]}" --threads 1000
hcase btrain-threads-neg error --threads -1 -- whtlm "${BT[@]}" --threads -1
hcase binfer-threads-70000 error --threads 70000 -- whtlm "${BI[@]}" --threads 70000
hcase binfer-threads-1000 error --threads 1000 -- whtlm "${BI[@]}" --threads 1000
hcase binfer-threads-neg error --threads -1 -- whtlm "${BI[@]}" --threads -1
given 'fixture run; json_set run/train_state.json options.threads 70000'
allow run
hcase state-threads-70000 error train_state.json threads 70000 -- whtlm train --resume run --quiet
given 'fixture run; json_set run/train_state.json options.threads 1000'
allow run
hcase state-threads-1000 error train_state.json threads 1000 -- whtlm train --resume run --quiet
given 'fixture run; json_set run/train_state.json options.threads -1'
allow run
hcase state-threads-neg error train_state.json threads -1 -- whtlm train --resume run --quiet
given 'fixture run; json_str run/train_state.json options.threads two'
allow run
hcase state-threads-string error train_state.json threads -- whtlm train --resume run --quiet
given 'fixture plan.json; json_set plan.json threads 70000'
hcase plan-threads-70000 error plan.json threads 70000 -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json threads 1000'
hcase plan-threads-1000 error plan.json threads 1000 -- whtlm "${EXP[@]}" --out e
given 'fixture ck-llama'
hcase env-omp-threads-70000 safe OMP_NUM_THREADS --sh 'OMP_NUM_THREADS=70000 whtlm eval --checkpoint ck-llama --data small.txt --split all --max-windows 1'
hcase env-isa-bogus error WHTLM_ISA bogus --sh 'WHTLM_ISA=bogus whtlm bench fwht --sizes 256 --rows 1 --reps 1 --min-time 0.001 --no-dense --threads 1'

# ==== train: every numeric option ===================================================
group train-options
hcase train-vocab-neg error --vocab -1 -- whtlm "${TRAIN[@]}" --steps 1 --vocab -1 --out r
hcase train-vocab-0 error --vocab -- whtlm "${TRAIN[@]}" --steps 1 --vocab 0 --out r
hcase train-vocab-huge error --vocab 1000000000 -- whtlm "${TRAIN[@]}" --steps 1 --vocab 1000000000 --out r
hcase train-vocab-2e32 error --vocab 4294967296 -- whtlm "${TRAIN[@]}" --steps 1 --vocab 4294967296 --out r
hcase train-vocab-small error --vocab 100 -- whtlm "${TRAIN[@]}" --steps 1 --vocab 100 --out r
hcase train-layers-neg error --layers -1 -- whtlm "${TRAIN[@]}" --steps 1 --layers -1 --out r
hcase train-layers-0 error --layers -- whtlm "${TRAIN[@]}" --steps 1 --layers 0 --out r
hcase train-layers-huge error --layers 100000 -- whtlm "${TRAIN[@]}" --steps 1 --layers 100000 --out r
hcase train-d-model-neg error --d-model -64 -- whtlm "${TRAIN[@]}" --steps 1 --d-model -64 --out r
hcase train-d-model-huge error --d-model 1048576 -- whtlm "${TRAIN[@]}" --steps 1 --d-model 1048576 --out r
hcase train-d-model-odd error --d-model 65 -- whtlm "${TRAIN[@]}" --steps 1 --d-model 65 --out r
hcase train-heads-neg error --heads -2 -- whtlm "${TRAIN[@]}" --steps 1 --heads -2 --out r
hcase train-heads-3 error --heads 3 -- whtlm "${TRAIN[@]}" --steps 1 --heads 3 --out r
hcase train-kv-heads-3 error --kv-heads 3 -- whtlm "${TRAIN[@]}" --steps 1 --kv-heads 3 --out r
hcase train-kv-heads-neg error --kv-heads -1 -- whtlm "${TRAIN[@]}" --steps 1 --kv-heads -1 --out r
hcase train-val-fraction-0 error --val-fraction -- whtlm "${TRAIN[@]}" --steps 1 --val-fraction 0 --out r
hcase train-val-fraction-1 error --val-fraction -- whtlm "${TRAIN[@]}" --steps 1 --val-fraction 1 --out r
hcase train-val-fraction-nan error --val-fraction nan -- whtlm "${TRAIN[@]}" --steps 1 --val-fraction nan --out r
hcase train-val-fraction-neg error --val-fraction -0.1 -- whtlm "${TRAIN[@]}" --steps 1 --val-fraction -0.1 --out r
hcase train-chunk-tokens-0 error --chunk-tokens -- whtlm "${TRAIN[@]}" --steps 1 --chunk-tokens 0 --out r
hcase train-chunk-tokens-neg error --chunk-tokens -1 -- whtlm "${TRAIN[@]}" --steps 1 --chunk-tokens -1 --out r
hcase train-chunk-tokens-huge error --chunk-tokens 99999999999 -- whtlm "${TRAIN[@]}" --steps 1 --chunk-tokens 99999999999 --out r
hcase train-steps-neg error --steps -1 -- whtlm "${TRAIN[@]}" --steps -1 --out r
hcase train-steps-0 error --steps -- whtlm "${TRAIN[@]}" --steps 0 --out r
hcase train-steps-float error --steps 1.5 -- whtlm "${TRAIN[@]}" --steps 1.5 --out r
hcase train-steps-empty error --steps -- whtlm "${TRAIN[@]}" --steps '' --out r
hcase train-lr-empty error --lr -- whtlm "${TRAIN[@]}" --steps 1 --lr '' --out r
hcase train-batch-2e32 error --batch 4294967296 -- whtlm "${TRAIN[@]}" --steps 1 --batch 4294967296 --out r
check '[ "$(json_get r/train_state.json step)" = 1 ]'
hcase train-steps-huge-stop-1 ok -- whtlm "${TRAIN[@]}" --steps 99999999999 --stop-after 1 --out r
hcase train-tokens-neg error --tokens -1 -- whtlm "${TRAIN[@]}" --tokens -1 --out r
hcase train-tokens-1e30 error --tokens 1e30 -- whtlm "${TRAIN[@]}" --tokens 1e30 --out r
hcase train-tokens-nan error --tokens nan -- whtlm "${TRAIN[@]}" --tokens nan --out r
hcase train-tokens-inf error --tokens inf -- whtlm "${TRAIN[@]}" --tokens inf --out r
hcase train-flops-inf error --flops inf -- whtlm "${TRAIN[@]}" --flops inf --out r
hcase train-flops-nan error --flops nan -- whtlm "${TRAIN[@]}" --flops nan --out r
hcase train-flops-neg error --flops -1e9 -- whtlm "${TRAIN[@]}" --flops -1e9 --out r
hcase train-flops-1e30 error --flops 1e30 -- whtlm "${TRAIN[@]}" --flops 1e30 --out r
hcase train-steps-and-tokens error --steps --tokens -- whtlm "${TRAIN[@]}" --steps 1 --tokens 640 --out r
hcase train-batch-0 error --batch -- whtlm "${TRAIN[@]}" --steps 1 --batch 0 --out r
hcase train-batch-neg error --batch -1 -- whtlm "${TRAIN[@]}" --steps 1 --batch -1 --out r
hcase train-batch-huge error --batch 1000000000 -- whtlm "${TRAIN[@]}" --steps 1 --batch 1000000000 --out r
hcase train-seq-neg error --seq -1 -- whtlm "${TRAIN[@]}" --steps 1 --seq -1 --out r
hcase train-seq-0 error --seq -- whtlm "${TRAIN[@]}" --steps 1 --seq 0 --out r
hcase train-seq-huge error --seq 1000000 -- whtlm "${TRAIN[@]}" --steps 1 --seq 1000000 --out r
check '[ "$(json_get r/config.json max_position_embeddings)" -ge 300 ]'
hcase train-seq-over-context ok -- whtlm "${TRAIN[@]}" --steps 1 --seq 300 --out r
hcase train-accum-0 error --accum -- whtlm "${TRAIN[@]}" --steps 1 --accum 0 --out r
hcase train-accum-huge error --accum 1000000000 -- whtlm "${TRAIN[@]}" --steps 1 --accum 1000000000 --out r
hcase train-lr-nan error --lr nan -- whtlm "${TRAIN[@]}" --steps 1 --lr nan --out r
hcase train-lr-inf error --lr inf -- whtlm "${TRAIN[@]}" --steps 1 --lr inf --out r
hcase train-lr-neg error --lr -0.001 -- whtlm "${TRAIN[@]}" --steps 1 --lr -0.001 --out r
hcase train-min-lr-ratio-nan error --min-lr-ratio nan -- whtlm "${TRAIN[@]}" --steps 1 --min-lr-ratio nan --out r
hcase train-min-lr-ratio-2 error --min-lr-ratio 2 -- whtlm "${TRAIN[@]}" --steps 1 --min-lr-ratio 2 --out r
hcase train-warmup-neg error --warmup -5 -- whtlm "${TRAIN[@]}" --steps 1 --warmup -5 --out r
hcase train-weight-decay-nan error --weight-decay nan -- whtlm "${TRAIN[@]}" --steps 1 --weight-decay nan --out r
hcase train-weight-decay-neg error --weight-decay -0.1 -- whtlm "${TRAIN[@]}" --steps 1 --weight-decay -0.1 --out r
hcase train-clip-nan error --clip nan -- whtlm "${TRAIN[@]}" --steps 1 --clip nan --out r
hcase train-clip-neg error --clip -1 -- whtlm "${TRAIN[@]}" --steps 1 --clip -1 --out r
hcase train-seed-neg error --seed -1 -- whtlm "${TRAIN[@]}" --steps 1 --seed -1 --out r
hcase train-seed-2e64 error --seed 18446744073709551616 -- whtlm "${TRAIN[@]}" --steps 1 --seed 18446744073709551616 --out r
hcase train-eval-every-neg error --eval-every -1 -- whtlm "${TRAIN[@]}" --steps 1 --eval-every -1 --out r
hcase train-eval-batches-0 error --eval-batches -- whtlm "${TRAIN[@]}" --steps 1 --eval-batches 0 --out r
hcase train-eval-batches-huge ok -- whtlm "${TRAIN[@]}" --steps 1 --eval-batches 1000000000 --out r
hcase train-save-every-neg error --save-every -1 -- whtlm "${TRAIN[@]}" --steps 1 --save-every -1 --out r
hcase train-stop-after-neg error --stop-after -1 -- whtlm "${TRAIN[@]}" --steps 2 --stop-after -1 --out r
hcase train-preset-bogus error --preset bogus -- whtlm "${TRAIN[@]}" --steps 1 --preset bogus --out r
hcase train-proj-bogus error --proj bogus -- whtlm "${TRAIN[@]}" --steps 1 --proj bogus --out r
hcase train-scale-init-bogus error --scale-init half -- whtlm "${TRAIN[@]}" --steps 1 --proj wht --scale-init half --out r
check '"$PY" -c "import json,sys; sys.exit(json.load(open(\"r/train_state.json\"))[\"options\"][\"scale_init\"] != \"one\")"'
hcase train-scale-init-one ok -- whtlm "${TRAIN[@]}" --steps 1 --proj wht --scale-init one --out r
hcase train-precision-fp16 error --precision fp16 -- whtlm "${TRAIN[@]}" --steps 1 --precision fp16 --out r
hcase train-data-missing error nothere.txt -- whtlm "${TRAIN[@]}" --steps 1 --data nothere.txt --out r
given ': >empty.txt'
hcase train-data-empty error empty.txt -- whtlm "${TRAIN[@]}" --steps 1 --data empty.txt --out r
hcase train-data-devzero error /dev/zero -- whtlm "${TRAIN[@]}" --steps 1 --data /dev/zero --out r
given 'mkfifo fifo.txt'
limit 20
hcase train-data-fifo error fifo.txt -- whtlm "${TRAIN[@]}" --steps 1 --data fifo.txt --out r
given 'mkdir d; ln -s /dev/zero d/zero.txt'
hcase train-data-dir-devzero error zero.txt -- whtlm "${TRAIN[@]}" --steps 1 --data d --out r
given 'head -c 20000 /dev/urandom >bin.txt'
hcase train-data-binary ok -- whtlm "${TRAIN[@]}" --steps 1 --data bin.txt --out r
hcase train-val-data-missing error nothere.txt -- whtlm "${TRAIN[@]}" --steps 1 --val-data nothere.txt --out r
hcase train-tokenizer-missing error nothere.json -- whtlm "${TRAIN[@]}" --steps 1 --tokenizer nothere.json --out r
hcase train-tokenizer-devzero error /dev/zero -- whtlm "${TRAIN[@]}" --steps 1 --tokenizer /dev/zero --out r
hcase train-val-data-devzero error /dev/zero -- whtlm "${TRAIN[@]}" --steps 1 --val-data /dev/zero --out r
check '[ -s r/model.safetensors ] && [ "$(json_get r/train_state.json step)" = 1 ]'
hcase train-steps-1 ok -- whtlm "${TRAIN[@]}" --steps 1 --threads 1 --out r

# ==== train and init outputs: never overwrite what the user has ======================
group outputs
given 'fixture ck-llama'
hcase train-out-onto-init-ckpt error ck-llama -- whtlm "${TRAIN[@]}" --steps 1 --out ck-llama
given 'fixture ck-llama'
hcase init-out-onto-ckpt error ck-llama -- whtlm init "${TINY[@]}" --seed 5 --out ck-llama
given 'fixture run'
hcase init-out-onto-run error run -- whtlm init "${TINY[@]}" --seed 5 --out run
given 'fixture run'
hcase train-out-onto-run error run -- whtlm "${TRAIN[@]}" --steps 1 --out run
given 'echo "my notes" >notes.txt'
hcase train-out-onto-file error notes.txt -- whtlm "${TRAIN[@]}" --steps 1 --out notes.txt
given 'echo "my notes" >notes.txt'
hcase init-out-onto-file error notes.txt -- whtlm init "${TINY[@]}" --out notes.txt
given 'mkdir mine; echo "my notes" >mine/notes.txt'
hcase train-out-user-folder safe mine -- whtlm "${TRAIN[@]}" --steps 1 --out mine
given 'mkdir -p mine/checkpoints/keep; echo "mine" >mine/checkpoints/keep/a.txt; echo "mine" >mine/checkpoints/notes.txt'
hcase train-out-user-checkpoints safe mine -- whtlm "${TRAIN[@]}" --steps 1 --save-every 1 --out mine
given 'mkdir mine; echo "my config" >mine/config.json'
hcase init-out-user-config error mine config.json -- whtlm init "${TINY[@]}" --out mine
given 'mkdir empty'
check '[ -s empty/model.safetensors ]'
hcase init-out-empty-folder ok -- whtlm init "${TINY[@]}" --out empty
given 'mkdir r; echo "mine" >r/model.safetensors.tmp'
hcase train-out-tmp-name safe r -- whtlm "${TRAIN[@]}" --steps 1 --out r
hcase train-out-empty error --out -- whtlm "${TRAIN[@]}" --steps 1 --out ''
# --force is how a user asks for an output to be replaced: then it works, and files
# whtlm does not write are still left alone.
given 'mkdir -p mine/checkpoints/keep; echo "mine" >mine/notes.txt; echo "mine" >mine/checkpoints/keep/a.txt'
check '[ -s mine/model.safetensors ] && [ "$(cat mine/notes.txt)" = mine ] && [ -s mine/checkpoints/keep/a.txt ]'
hcase train-out-force-keeps-user-files ok -- whtlm "${TRAIN[@]}" --steps 2 --save-every 1 --out mine --force
given 'fixture run'
allow run
check '[ "$(/usr/bin/python3 -c "import json; print(json.load(open(\"run/train_state.json\"))[\"step\"])")" = 1 ]'
hcase train-out-force-onto-run ok -- whtlm "${TRAIN[@]}" --steps 1 --out run --force
given 'fixture ck-llama'
allow ck-llama/model.safetensors ck-llama/config.json ck-llama/checksums.json
hcase init-out-force-onto-ckpt ok -- whtlm init "${TINY[@]}" --seed 5 --out ck-llama --force
given 'echo "my tokenizer" >t.json'
allow t.json
check '[ "$(head -c 1 t.json)" = "{" ]'
hcase toktrain-out-force ok -- whtlm tokenizer train --vocab 280 --data small.txt --out t.json --quiet --force
hcase train-out-missing error --out -- whtlm "${TRAIN[@]}" --steps 1

# ==== train --resume: train_state.json, checkpoints, metrics ==========================
group resume
given 'fixture run; json_str run/train_state.json options.scale_init half'
hcase resume-state-scale-init-bogus error train_state.json scale_init half -- whtlm train --resume run --quiet
given 'fixture run'
hcase resume-scale-init-given error --scale-init --resume -- whtlm train --resume run --scale-init one --quiet
given 'fixture run; json_str run/train_state.json checkpoint checkpoints/step-9'
allow run
hcase resume-ckpt-typo error train_state.json checkpoint step-9 -- whtlm train --resume run --quiet
given 'fixture run; json_str run/train_state.json checkpoint ../../x'
allow run
hcase resume-ckpt-dotdot error train_state.json checkpoint -- whtlm train --resume run --quiet
given 'fixture run; json_str run/train_state.json checkpoint /etc'
allow run
hcase resume-ckpt-etc error train_state.json checkpoint /etc -- whtlm train --resume run --quiet
given 'fixture run; fixture run decoy; json_str run/train_state.json checkpoint "$PWD/decoy/checkpoints/step-2"'
allow run
hcase resume-ckpt-absolute error train_state.json checkpoint -- whtlm train --resume run --quiet
given 'fixture run; json_str run/train_state.json checkpoint ""'
allow run
hcase resume-ckpt-empty error train_state.json checkpoint -- whtlm train --resume run --quiet
given 'fixture run; json_set run/train_state.json checkpoint 2'
allow run
hcase resume-ckpt-number error train_state.json checkpoint -- whtlm train --resume run --quiet
given 'fixture run; rm run/train_state.json'
allow run
hcase resume-state-missing error train_state.json -- whtlm train --resume run --quiet
given 'fixture run; : >run/train_state.json'
allow run
hcase resume-state-empty error train_state.json -- whtlm train --resume run --quiet
given 'fixture run; rm run/train_state.json; mkdir run/train_state.json'
allow run
hcase resume-state-dir error train_state.json -- whtlm train --resume run --quiet
given 'fixture run; rm run/train_state.json; ln -s /dev/zero run/train_state.json'
allow run
hcase resume-state-devzero error train_state.json -- whtlm train --resume run --quiet
given 'fixture run; rm run/train_state.json; mkfifo run/train_state.json'
limit 20
allow run
hcase resume-state-fifo error train_state.json -- whtlm train --resume run --quiet
given 'fixture run; truncate_to run/train_state.json 300'
allow run
hcase resume-state-truncated error train_state.json -- whtlm train --resume run --quiet
given 'fixture run; sed -i "s/\"step\"/\"stEp\"/" run/train_state.json'
allow run
hcase resume-state-flipped error train_state.json step -- whtlm train --resume run --quiet
given 'fixture run; json_set run/train_state.json step 99999999999'
allow run
hcase resume-state-step-huge error train_state.json step -- whtlm train --resume run --quiet
given 'fixture run; json_set run/train_state.json step -1'
allow run
hcase resume-state-step-neg error train_state.json step -- whtlm train --resume run --quiet
given 'fixture run; json_set run/train_state.json tokens 1e999'
allow run
hcase resume-state-1e999 error train_state.json tokens -- whtlm train --resume run --quiet
given 'fixture run; json_del run/train_state.json options'
allow run
hcase resume-state-no-options error train_state.json options -- whtlm train --resume run --quiet
given 'fixture run; json_set run/train_state.json options.steps -5'
allow run
hcase resume-state-steps-neg error train_state.json steps -- whtlm train --resume run --quiet
given 'fixture run; json_set run/train_state.json options.lr -1'
allow run
hcase resume-state-lr-neg error train_state.json lr -- whtlm train --resume run --quiet
given 'fixture run; json_set run/train_state.json options.batch 1000000000'
allow run
hcase resume-state-batch-huge error train_state.json batch -- whtlm train --resume run --quiet
given 'fixture run; json_set run/train_state.json options.seq 100000'
allow run
hcase resume-state-seq-over error train_state.json seq -- whtlm train --resume run --quiet
given 'fixture run; json_set run/train_state.json options.config.num_hidden_layers 1000000000'
allow run
hcase resume-state-layers-huge error train_state.json num_hidden_layers -- whtlm train --resume run --quiet
given 'fixture run; json_set run/train_state.json options.clip -1'
allow run
hcase resume-state-clip-neg error train_state.json clip -- whtlm train --resume run --quiet
given 'fixture run; json_str run/train_state.json options.data.path /nonexistent/x.txt'
allow run
hcase resume-state-data-missing error /nonexistent/x.txt -- whtlm train --resume run --quiet
given 'fixture run'
allow run
check '[ "$(json_get run/train_state.json step)" = 4 ]'
hcase resume-ok ok -- whtlm train --resume run --quiet
given 'fixture run; whtlm train --resume run --quiet'
allow run
hcase resume-finished ok -- whtlm train --resume run --quiet
given 'fixture run'
allow run
hcase resume-with-lr error --resume --lr -- whtlm train --resume run --lr 0.5 --quiet
given 'fixture run'
allow run
hcase resume-with-nonfinite-policy ok -- whtlm train --resume run --on-nonfinite skip --max-skips 5 --quiet
given 'fixture run'
allow run
hcase resume-bad-nonfinite-policy error --on-nonfinite maybe -- whtlm train --resume run --on-nonfinite maybe --quiet
hcase resume-nothing error nothere -- whtlm train --resume nothere --quiet
given 'fixture ck-llama'
hcase resume-init-ckpt error ck-llama train_state.json -- whtlm train --resume ck-llama --quiet
# The newest checkpoint is damaged: a correct whtlm keeps checksums and an older
# checkpoint, resumes from that (saying so), and finishes the run.
given 'fixture run; flip_byte run/checkpoints/step-2/model.safetensors -100'
allow run
check '[ "$(json_get run/train_state.json step)" = 4 ] && grep -Eqi "step[- ]?1([^0-9]|$)" "$ERR"'
hcase resume-fallback-flipped ok -- whtlm train --resume run --quiet
given 'fixture run; truncate_to run/checkpoints/step-2/model.safetensors 1000'
allow run
check '[ "$(json_get run/train_state.json step)" = 4 ] && grep -Eqi "step[- ]?1([^0-9]|$)" "$ERR"'
hcase resume-fallback-truncated ok -- whtlm train --resume run --quiet
given 'fixture run; truncate_to run/checkpoints/step-2/optimizer.safetensors 5000'
allow run
check '[ "$(json_get run/train_state.json step)" = 4 ] && grep -Eqi "step[- ]?1([^0-9]|$)" "$ERR"'
hcase resume-fallback-opt-truncated ok -- whtlm train --resume run --quiet
given 'fixture run; for f in run/checkpoints/*/model.safetensors; do truncate_to "$f" 1000; done'
allow run
hcase resume-all-truncated error model.safetensors -- whtlm train --resume run --quiet
given 'fixture run; for f in run/checkpoints/*/model.safetensors; do flip_byte "$f" -100; done'
allow run
hcase resume-all-flipped error model.safetensors -- whtlm train --resume run --quiet
given 'fixture run; for f in run/checkpoints/*/optimizer.safetensors; do st_set "$f" exp_avg_sq nan 7; done'
allow run
hcase resume-all-opt-nan error optimizer.safetensors -- whtlm train --resume run --quiet
given 'fixture run; printf "garbage\n{\"step\": \n" >>run/metrics.jsonl'
allow run
hcase resume-metrics-garbage ok -- whtlm train --resume run --quiet
given 'fixture run; rm run/metrics.jsonl; ln -s /dev/zero run/metrics.jsonl'
allow run
hcase resume-metrics-devzero error metrics.jsonl -- whtlm train --resume run --quiet
given 'fixture run; rm run/metrics.jsonl; mkfifo run/metrics.jsonl'
limit 20
allow run
hcase resume-metrics-fifo error metrics.jsonl -- whtlm train --resume run --quiet
group shards
# Shards stay open while they are read: a soft limit on open files is raised, a hard
# one below the shard count is said with what to do.
given 'many_shards many 300'
hcase shards-many-soft-limit ok --sh '(ulimit -Sn 128; whtlm train --preset tiny --layers 1 --d-model 64 --heads 2 --seq 32 --batch 2 --steps 1 --quiet --threads 1 --data many --out r)'
given 'many_shards many 300'
hcase shards-many-hard-limit error "ulimit -n" train_ --sh '(ulimit -n 128; whtlm train --preset tiny --layers 1 --d-model 64 --heads 2 --seq 32 --batch 2 --steps 1 --quiet --threads 1 --data many --out r)'
# SIGBUS: a mapped shard truncated while training must end in an error naming it.
given 'fixture shards'
allow -a shards
hcase shard-truncated-while-training error train_000000.bin --sh 'whtlm train --preset tiny --layers 1 --d-model 64 --heads 2 --seq 32 --batch 2 --steps 100000 --eval-every 0 --quiet --threads 1 --data shards --out r & p=$!; sleep 1; truncate -s 1100 shards/train_000000.bin; wait $p'

# ==== config.json ===================================================================
group config
given 'fixture ck-llama; rm ck-llama/config.json'
hcase cfg-missing error config.json -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; : >ck-llama/config.json'
hcase cfg-empty error config.json -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; rm ck-llama/config.json; mkdir ck-llama/config.json'
hcase cfg-dir error config.json -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; rm ck-llama/config.json; ln -s /dev/zero ck-llama/config.json'
hcase cfg-devzero error config.json -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; rm ck-llama/config.json; mkfifo ck-llama/config.json'
limit 20
hcase cfg-fifo error config.json -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; truncate_to ck-llama/config.json 100'
hcase cfg-truncated error config.json -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; echo "[]" >ck-llama/config.json'
hcase cfg-array error config.json -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json num_hidden_layers 1000000000'
hcase cfg-layers-huge error config.json num_hidden_layers -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json num_hidden_layers 1e9'
hcase cfg-layers-float error config.json num_hidden_layers -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json num_hidden_layers 1e999'
hcase cfg-layers-1e999 error config.json num_hidden_layers -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json num_hidden_layers "\"1\""'
hcase cfg-layers-string error config.json num_hidden_layers -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json num_hidden_layers -1'
hcase cfg-layers-neg error config.json num_hidden_layers -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json hidden_size 1048576; json_del ck-llama/config.json head_dim'
hcase cfg-hidden-huge error config.json hidden_size -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json intermediate_size 1000000000'
hcase cfg-intermediate-huge error config.json intermediate_size -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json vocab_size 1000000000'
hcase cfg-vocab-huge error config.json vocab_size -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json max_position_embeddings 1000000000'
hcase cfg-context-huge error config.json max_position_embeddings -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-gpt2; json_set ck-gpt2/config.json n_positions 1000000000'
hcase cfg-gpt2-positions-huge error config.json n_positions -- whtlm "${EVAL[@]}" --checkpoint ck-gpt2
given 'fixture ck-llama; json_set ck-llama/config.json rms_norm_eps 1e999'
hcase cfg-eps-1e999 error config.json rms_norm_eps -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json rms_norm_eps -1'
hcase cfg-eps-neg error config.json rms_norm_eps -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json rope_theta -10000'
hcase cfg-rope-theta-neg error config.json rope_theta -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_str ck-llama/config.json hidden_act gelu'
hcase cfg-llama-hidden-act error config.json hidden_act gelu -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json attention_bias true'
hcase cfg-llama-attention-bias error config.json attention_bias -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json mlp_bias true'
hcase cfg-llama-mlp-bias error config.json mlp_bias -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json tie_word_embeddings true'
hcase cfg-llama-tied error config.json tie_word_embeddings -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-gpt2; json_set ck-gpt2/config.json tie_word_embeddings false'
hcase cfg-gpt2-untied error config.json tie_word_embeddings -- whtlm "${EVAL[@]}" --checkpoint ck-gpt2
given 'fixture ck-gpt2; json_str ck-gpt2/config.json activation_function relu'
hcase cfg-gpt2-relu error config.json activation_function relu -- whtlm "${EVAL[@]}" --checkpoint ck-gpt2
given 'fixture ck-llama; json_set ck-llama/config.json num_attention_heads 3; json_del ck-llama/config.json head_dim'
hcase cfg-heads-3 error config.json num_attention_heads -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json num_key_value_heads 3'
hcase cfg-kv-heads-3 error config.json num_key_value_heads -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json head_dim 16'
hcase cfg-head-dim error config.json head_dim -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_str ck-llama/config.json model_type bert'
hcase cfg-model-type error config.json model_type bert -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_str ck-llama/config.json attn_output_projection bogus'
hcase cfg-projection-bogus error config.json attn_output_projection -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json vocab_size 300'
hcase cfg-vocab-mismatch error model.safetensors embed_tokens -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json rope_scaling "{\"type\": \"linear\", \"factor\": 2}"'
hcase cfg-rope-scaling error config.json rope_scaling -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json transformers_version "\"4.40.0\""; rm -f ck-llama/checksums.json'
hcase cfg-extra-field ok -- whtlm "${EVAL[@]}" --checkpoint ck-llama
# The same edit with the checkpoint's checksums still there is found, naming the file.
given 'fixture ck-llama; json_set ck-llama/config.json transformers_version "\"4.40.0\""'
hcase cfg-edited-checksummed error config.json checksums.json -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; json_set ck-llama/config.json num_hidden_layers 1000000000'
hcase cfg-layers-huge-generate error config.json num_hidden_layers -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi
given 'fixture ck-llama; json_str ck-llama/config.json hidden_act gelu'
hcase cfg-llama-hidden-act-generate error config.json hidden_act -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi

# ==== model.safetensors and optimizer.safetensors ===================================
group weights
given 'fixture ck-llama; rm ck-llama/model.safetensors'
hcase st-missing error model.safetensors -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; : >ck-llama/model.safetensors'
hcase st-empty error model.safetensors -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; rm ck-llama/model.safetensors; mkdir ck-llama/model.safetensors'
hcase st-dir error model.safetensors -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; rm ck-llama/model.safetensors; ln -s /dev/zero ck-llama/model.safetensors'
hcase st-devzero error model.safetensors -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; rm ck-llama/model.safetensors; mkfifo ck-llama/model.safetensors'
limit 20
hcase st-fifo error model.safetensors -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; truncate_to ck-llama/model.safetensors 200000'
hcase st-truncated error model.safetensors -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; st_len ck-llama/model.safetensors 4611686018427387904'
hcase st-header-len-huge error model.safetensors -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; st_header ck-llama/model.safetensors "{\"model.norm.weight\": {\"dtype\": \"F32\", \"shape\": [64], \"data_offsets\": [0, 1e999]}}"'
hcase st-header-1e999 error model.safetensors -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; st_header ck-llama/model.safetensors "{\"a\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4], \"data_offsets\": [0, 0]}}"'
hcase st-shape-overflow error model.safetensors -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; st_set ck-llama/model.safetensors model.norm.weight nan 3; rm -f ck-llama/checksums.json'
hcase st-nan-eval error model.safetensors model.norm.weight -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; st_set ck-llama/model.safetensors lm_head.weight inf 100; rm -f ck-llama/checksums.json'
hcase st-inf-generate error model.safetensors lm_head.weight -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi
given 'fixture ck-gpt2; st_set ck-gpt2/model.safetensors transformer.wte.weight -inf 7; rm -f ck-gpt2/checksums.json'
hcase st-gpt2-neginf-generate error model.safetensors transformer.wte.weight -- whtlm "${GEN[@]}" --checkpoint ck-gpt2 --prompt hi
given 'fixture run; flip_byte run/model.safetensors -100'
hcase st-flipped-run error model.safetensors -- whtlm "${EVAL[@]}" --checkpoint run
given 'fixture ck-llama; flip_byte ck-llama/model.safetensors -100'
hcase st-flipped-init error model.safetensors -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-llama; st_copy ck-llama/model.safetensors model.norm.weight extra.weight; rm -f ck-llama/checksums.json'
hcase st-extra-tensor error model.safetensors extra.weight -- whtlm "${EVAL[@]}" --checkpoint ck-llama
given 'fixture ck-gpt2; st_copy ck-gpt2/model.safetensors transformer.wte.weight lm_head.weight 2; rm -f ck-gpt2/checksums.json'
hcase st-gpt2-untied-head error model.safetensors lm_head.weight -- whtlm "${GEN[@]}" --checkpoint ck-gpt2 --prompt hi
given 'fixture ck-gpt2; st_copy ck-gpt2/model.safetensors transformer.wte.weight lm_head.weight 1; rm -f ck-gpt2/checksums.json'
hcase st-gpt2-tied-copy ok -- whtlm "${GEN[@]}" --checkpoint ck-gpt2 --prompt hi
given 'fixture ck-llama; st_dtype ck-llama/model.safetensors model.norm.weight I32; rm -f ck-llama/checksums.json'
hcase st-wrong-dtype error model.safetensors model.norm.weight -- whtlm "${EVAL[@]}" --checkpoint ck-llama

# ==== tokenizer.json, encoder.json + vocab.bpe ======================================
group tokenizer-files
TI=(tokenizer info --tokenizer)
hcase tok-missing error nothere.json -- whtlm "${TI[@]}" nothere.json
given ': >t.json'
hcase tok-empty error t.json -- whtlm "${TI[@]}" t.json
given 'mkdir t'
hcase tok-dir-empty error t -- whtlm "${TI[@]}" t
hcase tok-devzero error /dev/zero -- whtlm "${TI[@]}" /dev/zero
given 'mkfifo t.json'
limit 20
hcase tok-fifo error t.json -- whtlm "${TI[@]}" t.json
given 'fixture tok.json t.json; truncate_to t.json 2000'
hcase tok-truncated error t.json -- whtlm "${TI[@]}" t.json
given 'fixture tok.json t.json; json_set t.json model.vocab.zzzz 67108864'
hcase tok-id-huge error t.json 67108864 -- whtlm "${TI[@]}" t.json
given 'fixture tok.json t.json; json_set t.json added_tokens.0.id 2147483646'
hcase tok-added-id-huge error t.json 2147483646 -- whtlm "${TI[@]}" t.json
given 'fixture tok.json t.json; json_set t.json model.vocab.zzzz -1'
hcase tok-id-neg error t.json zzzz -- whtlm "${TI[@]}" t.json
given 'fixture tok.json t.json; json_set t.json model.vocab.zzzz 1e999'
hcase tok-id-1e999 error t.json 1e999 -- whtlm "${TI[@]}" t.json
given 'fixture tok.json t.json; json_set t.json model.vocab.zzzz 301'
hcase tok-id-gap error t.json 300 -- whtlm "${TI[@]}" t.json
given 'fixture tok.json t.json; json_set t.json model.vocab.zzzz 5'
hcase tok-id-dup error t.json zzzz -- whtlm "${TI[@]}" t.json
given 'fixture tok.json t.json; json_set t.json model.vocab "[]"'
hcase tok-vocab-array error t.json model.vocab -- whtlm "${TI[@]}" t.json
given 'fixture tok.json t.json; json_set t.json model.merges.0 "\"zz qq\""'
hcase tok-merge-unknown error t.json zz -- whtlm "${TI[@]}" t.json
given 'fixture tok.json t.json; json_str t.json model.type WordPiece'
hcase tok-model-type error t.json model.type -- whtlm "${TI[@]}" t.json
given 'fixture tok.json t.json; json_set t.json normalizer "{\"type\": \"Lowercase\"}"'
hcase tok-normalizer error t.json normalizer -- whtlm "${TI[@]}" t.json
given 'fixture tok.json t.json; json_set t.json pre_tokenizer.add_prefix_space true'
hcase tok-prefix-space error t.json add_prefix_space -- whtlm "${TI[@]}" t.json
given 'fixture ck-tok; json_set ck-tok/tokenizer.json model.vocab.zzzz 67108864'
hcase tok-ckpt-id-huge-generate error tokenizer.json 67108864 -- whtlm "${GEN[@]}" --checkpoint ck-tok --prompt hi
given 'fixture ck-tok; json_set ck-tok/tokenizer.json model.vocab.zzzz 67108864'
hcase tok-ckpt-id-huge-eval error tokenizer.json 67108864 -- whtlm "${EVAL[@]}" --checkpoint ck-tok
given 'fixture ck-tok; rm ck-tok/tokenizer.json; mkdir ck-tok/tokenizer.json'
hcase tok-ckpt-dir-eval error tokenizer.json -- whtlm "${EVAL[@]}" --checkpoint ck-tok
given 'fixture ck-tok; rm ck-tok/tokenizer.json; ln -s /dev/zero ck-tok/tokenizer.json'
hcase tok-ckpt-devzero-eval error tokenizer.json -- whtlm "${EVAL[@]}" --checkpoint ck-tok
given 'fixture ck-tok; rm ck-tok/tokenizer.json; mkfifo ck-tok/tokenizer.json'
limit 20
hcase tok-ckpt-fifo-generate error tokenizer.json -- whtlm "${GEN[@]}" --checkpoint ck-tok --prompt hi
given 'fixture ck-llama; fixture tok.json; cp tok.json ck-llama/tokenizer.json'
hcase tok-ckpt-larger-than-model error tokenizer.json 300 256 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi
given 'fixture ck-tok'
hcase tok-ckpt-generate-ok ok -- whtlm "${GEN[@]}" --checkpoint ck-tok --prompt "the lord"
given 'fixture gpt2tok g; json_set g/encoder.json zzzz 67108864'
hcase gpt2-encoder-id-huge error encoder.json 67108864 -- whtlm "${TI[@]}" g
given 'fixture gpt2tok g; : >g/encoder.json'
hcase gpt2-encoder-empty error encoder.json -- whtlm "${TI[@]}" g
given 'fixture gpt2tok g; rm g/encoder.json; ln -s /dev/zero g/encoder.json'
hcase gpt2-encoder-devzero error encoder.json -- whtlm "${TI[@]}" g
given 'fixture gpt2tok g; rm g/vocab.bpe; mkfifo g/vocab.bpe'
limit 20
hcase gpt2-bpe-fifo error vocab.bpe -- whtlm "${TI[@]}" g
given 'fixture gpt2tok g; echo "a" >>g/vocab.bpe'
hcase gpt2-bpe-bad-line error vocab.bpe -- whtlm "${TI[@]}" g
given 'fixture gpt2tok g; echo "zz qq" >>g/vocab.bpe'
hcase gpt2-bpe-unknown error vocab.bpe zz -- whtlm "${TI[@]}" g
given 'fixture gpt2tok g; json_set g/encoder.json zzzz 1e999'
hcase gpt2-encoder-1e999 error encoder.json 1e999 -- whtlm "${TI[@]}" g
given 'fixture gpt2tok g'
hcase gpt2-files-ok ok -- whtlm "${TI[@]}" g

# ==== tokenizer commands ===========================================================
group tokenizer
hcase toktrain-vocab-10 error --vocab 10 -- whtlm tokenizer train --vocab 10 --data small.txt --out t.json --quiet
hcase toktrain-vocab-0 error --vocab -- whtlm tokenizer train --vocab 0 --data small.txt --out t.json --quiet
hcase toktrain-vocab-neg error --vocab -5 -- whtlm tokenizer train --vocab -5 --data small.txt --out t.json --quiet
hcase toktrain-vocab-huge error --vocab 1000000000 -- whtlm tokenizer train --vocab 1000000000 --data small.txt --out t.json --quiet
hcase toktrain-vocab-2e32 error --vocab 4294967296 -- whtlm tokenizer train --vocab 4294967296 --data small.txt --out t.json --quiet
hcase toktrain-min-frequency-neg error --min-frequency -1 -- whtlm tokenizer train --vocab 300 --min-frequency -1 --data small.txt --out t.json --quiet
hcase toktrain-min-frequency-0 ok -- whtlm tokenizer train --vocab 300 --min-frequency 0 --data small.txt --out t.json --quiet
hcase toktrain-special-empty error --special -- whtlm tokenizer train --vocab 300 --special '' --data small.txt --out t.json --quiet
hcase toktrain-special-dup error --special abc -- whtlm tokenizer train --vocab 300 --special abc --special abc --data small.txt --out t.json --quiet
given 'echo "my tokenizer" >t.json'
hcase toktrain-out-existing error t.json -- whtlm tokenizer train --vocab 280 --data small.txt --out t.json --quiet
given 'mkdir t.json'
hcase toktrain-out-dir error t.json -- whtlm tokenizer train --vocab 280 --data small.txt --out t.json --quiet
given 'echo "mine" >t.json.tmp'
check '[ -s t.json ]'
hcase toktrain-out-tmp-name ok -- whtlm tokenizer train --vocab 280 --data small.txt --out t.json --quiet
hcase toktrain-out-no-folder error nothere/t.json -- whtlm tokenizer train --vocab 280 --data small.txt --out nothere/t.json --quiet
hcase toktrain-data-devzero error /dev/zero -- whtlm tokenizer train --vocab 280 --data /dev/zero --out t.json --quiet
given 'mkfifo f.txt'
limit 20
hcase toktrain-data-fifo error f.txt -- whtlm tokenizer train --vocab 280 --data f.txt --out t.json --quiet
given ': >empty.txt'
hcase toktrain-data-empty error empty.txt -- whtlm tokenizer train --vocab 280 --data empty.txt --out t.json --quiet
given 'head -c 20000 /dev/urandom >bin.txt'
check '[ -s t.json ]'
hcase toktrain-data-binary ok -- whtlm tokenizer train --vocab 280 --data bin.txt --out t.json --quiet
hcase encode-stdin-devzero error stdin --sh 'whtlm tokenizer encode --threads 1 </dev/zero'
hcase decode-stdin-devzero error stdin --sh 'whtlm tokenizer decode </dev/zero'
hcase encode-jsonl-bad error stdin "line 2" --sh 'printf "\"ok\"\nnot json\n" | whtlm tokenizer encode --jsonl --threads 1'
hcase decode-id-over-vocab error 999 --sh 'echo 999 | whtlm tokenizer decode'
hcase decode-id-neg error -1 --sh 'echo "1 -1" | whtlm tokenizer decode'
hcase decode-id-2e32 error 4294967296 --sh 'echo 4294967296 | whtlm tokenizer decode'
hcase decode-json-float error stdin 1.5 --sh 'echo "[1, 1.5]" | whtlm tokenizer decode'
hcase decode-json-deep error stdin --sh '"$PY" -c "print(\"[\" * 200000)" | whtlm tokenizer decode'
given 'fixture tok.json'
check 'cmp -s "$OUT" <(printf "hello")'
hcase decode-roundtrip ok --sh 'printf hello | whtlm tokenizer encode --tokenizer tok.json --threads 1 | whtlm tokenizer decode --tokenizer tok.json'
hcase tokinfo-empty-spec error --tokenizer -- whtlm tokenizer info --tokenizer ''
given 'fixture tok.json; echo "my file" >out.json'
hcase tokconvert-out-existing error out.json -- whtlm tokenizer convert --tokenizer tok.json --out out.json
given 'fixture tok.json'
hcase tokconvert-out-onto-itself error tok.json -- whtlm tokenizer convert --tokenizer tok.json --out tok.json
given 'fixture gpt2tok g'
check '[ -s out.json ]'
hcase tokconvert-gpt2-ok ok -- whtlm tokenizer convert --tokenizer g --out out.json
given 'fixture tok.json'
hcase tokbench-reps-0 error --reps -- whtlm "${TOKB[@]}" --reps 0
given 'fixture tok.json'
hcase tokbench-reps-neg error --reps -3 -- whtlm "${TOKB[@]}" --reps -3
given 'fixture tok.json'
hcase tokbench-data-devzero error /dev/zero -- whtlm tokenizer bench --tokenizer tok.json --reps 1 --threads 1 --data /dev/zero
given 'fixture tok.json; echo "{\"mine\": 1}" >b.json'
hcase tokbench-json-existing error b.json -- whtlm "${TOKB[@]}" --threads 1 --json b.json
given 'fixture tok.json; echo "{\"mine\": 1}" >b.json'
hcase tokbench-json-existing-failing error '--reps|b.json' -- whtlm "${TOKB[@]}" --threads 1 --reps 0 --json b.json

# ==== data prepare ==================================================================
group prepare
hcase prepare-val-fraction-0 error --val-fraction -- whtlm "${PREP[@]}" --val-fraction 0 --out p
hcase prepare-val-fraction-1 error --val-fraction -- whtlm "${PREP[@]}" --val-fraction 1 --out p
hcase prepare-val-fraction-nan error --val-fraction nan -- whtlm "${PREP[@]}" --val-fraction nan --out p
hcase prepare-val-fraction-inf error --val-fraction inf -- whtlm "${PREP[@]}" --val-fraction inf --out p
hcase prepare-val-fraction-empty error --val-fraction -- whtlm "${PREP[@]}" --val-fraction '' --out p
hcase prepare-tokenizer-devzero error /dev/zero -- whtlm "${PREP[@]}" --tokenizer /dev/zero --out p
given 'fixture shards'
hcase prepare-out-existing-shards error shards -- whtlm "${PREP[@]}" --out shards
hcase prepare-chunk-tokens-0 error --chunk-tokens -- whtlm data prepare --data small.txt --chunk-tokens 0 --out p
hcase prepare-chunk-tokens-neg error --chunk-tokens -1 -- whtlm data prepare --data small.txt --chunk-tokens -1 --out p
hcase prepare-shard-tokens-0 error --shard-tokens -- whtlm "${PREP[@]}" --shard-tokens 0 --out p
hcase prepare-shard-tokens-neg error --shard-tokens -1 -- whtlm "${PREP[@]}" --shard-tokens -1 --out p
check '[ "$(ls p/train_*.bin | wc -l)" -ge 9 ]'
hcase prepare-shard-tokens-1000 ok -- whtlm "${PREP[@]}" --shard-tokens 1000 --threads 1 --out p
given 'mkdir p; echo "mine" >p/notes.txt'
hcase prepare-out-user-folder error p -- whtlm "${PREP[@]}" --out p
given 'echo "mine" >p'
hcase prepare-out-file error p -- whtlm "${PREP[@]}" --out p
hcase prepare-data-devzero error /dev/zero -- whtlm data prepare --data /dev/zero --out p
given 'mkfifo f.txt'
limit 20
hcase prepare-data-fifo error f.txt -- whtlm data prepare --data f.txt --out p
given ': >empty.txt'
hcase prepare-data-empty error empty.txt -- whtlm data prepare --data empty.txt --out p
given 'big_tokenizer big.json 70000'
hcase prepare-vocab-70000 error big.json 65536 -- whtlm data prepare --tokenizer big.json --data small.txt --out p

# ==== llm.c shards and prepared folders, read by train and eval ======================
group shards
given 'fixture x.bin; truncate_to x.bin 100'
hcase shard-truncated-header error x.bin -- whtlm "${TRAIN[@]}" --steps 1 --vocab 300 --data x.bin --out r
given 'fixture x.bin; truncate_to x.bin 3000'
hcase shard-truncated-body error x.bin -- whtlm "${TRAIN[@]}" --steps 1 --vocab 300 --data x.bin --out r
given 'shard x.bin 4096 12345'
hcase shard-bad-magic error x.bin 12345 -- whtlm "${TRAIN[@]}" --steps 1 --vocab 300 --data x.bin --out r
given 'shard x.bin 2147483647'
hcase shard-count-huge error x.bin 2147483647 -- whtlm "${TRAIN[@]}" --steps 1 --vocab 300 --data x.bin --out r
given 'shard x.bin -5'
hcase shard-count-neg error x.bin -5 -- whtlm "${TRAIN[@]}" --steps 1 --vocab 300 --data x.bin --out r
given 'shard x.bin 4096 20240520 1 300'
hcase shard-token-over-vocab error x.bin 300 -- whtlm "${TRAIN[@]}" --steps 1 --vocab 300 --data x.bin --out r
given 'mkfifo x.bin'
limit 20
hcase shard-fifo error x.bin -- whtlm "${TRAIN[@]}" --steps 1 --vocab 300 --data x.bin --out r
given 'mkdir d; ln -s /dev/zero d/train_000000.bin'
hcase shard-dir-devzero error train_000000.bin -- whtlm "${TRAIN[@]}" --steps 1 --vocab 300 --data d --out r
given 'fixture x.bin'
hcase shard-vocab-too-small error x.bin --vocab -- whtlm "${TRAIN[@]}" --steps 1 --data x.bin --out r
given 'fixture shards; rm shards/tokenizer.json'
hcase prepared-no-tokenizer error tokenizer.json -- whtlm "${TRAIN[@]}" --steps 1 --data shards --out r
given 'fixture shards; fixture gpt2tok; cp "$FIX/ck-llama/config.json" shards/tokenizer.json'
hcase prepared-tokenizer-garbage error tokenizer.json -- whtlm "${TRAIN[@]}" --steps 1 --data shards --out r
given 'fixture shards; rm shards/val_*.bin'
hcase prepared-no-val error val -- whtlm "${TRAIN[@]}" --steps 1 --data shards --out r
given 'fixture shards; truncate_to shards/val_000000.bin 1500'
hcase prepared-val-truncated error val_000000.bin -- whtlm "${TRAIN[@]}" --steps 1 --data shards --out r
given 'fixture shards'
check '[ "$(json_get r/train_state.json step)" = 1 ]'
hcase prepared-train-ok ok -- whtlm "${TRAIN[@]}" --steps 1 --data shards --out r
given 'fixture ck-tok; fixture shards; truncate_to shards/val_000000.bin 1500'
hcase prepared-eval-val-truncated error val_000000.bin -- whtlm eval --checkpoint ck-tok --data shards --seq 32 --threads 1

# ==== generate ======================================================================
group generate
given 'fixture ck-llama'
hcase gen-temperature-nan error --temperature nan -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --temperature nan
given 'fixture ck-llama'
hcase gen-temperature-inf error --temperature inf -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --temperature inf
given 'fixture ck-llama'
hcase gen-temperature-neg error --temperature -1 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --temperature -1
given 'fixture ck-llama'
hcase gen-temperature-0 ok -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --temperature 0
given 'fixture ck-llama'
hcase gen-top-p-nan error --top-p nan -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --top-p nan
given 'fixture ck-llama'
hcase gen-top-p-0 error --top-p -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --top-p 0
given 'fixture ck-llama'
hcase gen-top-p-2 error --top-p 2 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --top-p 2
given 'fixture ck-llama'
hcase gen-top-k-neg error --top-k -1 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --top-k -1
given 'fixture ck-llama'
hcase gen-top-k-over-vocab ok -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --top-k 1000000
given 'fixture ck-llama'
hcase gen-rep-penalty-nan error --repetition-penalty nan -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --repetition-penalty nan
given 'fixture ck-llama'
hcase gen-rep-penalty-inf error --repetition-penalty inf -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --repetition-penalty inf
given 'fixture ck-llama'
hcase gen-rep-penalty-0 error --repetition-penalty -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --repetition-penalty 0
given 'fixture ck-llama'
hcase gen-seed-neg error --seed -1 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --seed -1
given 'fixture ck-llama'
hcase gen-prompt-tokens-2e32 error --prompt-tokens 4294967296 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt-tokens 1,4294967296
given 'fixture ck-llama'
hcase gen-prompt-tokens-neg error --prompt-tokens -1 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt-tokens 1,-1
given 'fixture ck-llama'
hcase gen-prompt-tokens-over-vocab error --prompt-tokens 256 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt-tokens 1,256
given 'fixture ck-llama'
hcase gen-prompt-tokens-empty error --prompt-tokens -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt-tokens ''
given 'fixture ck-llama'
hcase gen-prompt-tokens-garbage error --prompt-tokens x -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt-tokens 1,x
given 'fixture ck-llama'
hcase gen-prompt-empty error prompt -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt ''
given 'fixture ck-llama'
hcase gen-eos-huge error --eos 99999 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --eos 99999
given 'fixture ck-llama'
hcase gen-eos-neg error --eos -5 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --eos -5
given 'fixture ck-llama'
hcase gen-max-new-neg error --max-new-tokens -1 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --max-new-tokens -1
given 'fixture ck-llama'
hcase gen-max-new-float error --max-new-tokens 1.5 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --max-new-tokens 1.5
given 'fixture ck-llama'
hcase gen-temperature-empty error --temperature -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --temperature ''
given 'fixture ck-llama'
check '[ "$(wc -c <"$OUT")" -le 260 ]'
hcase gen-max-new-huge ok -- whtlm generate --threads 1 --checkpoint ck-llama --prompt hi --max-new-tokens 1000000000
given 'fixture ck-llama'
check 'cmp -s "$OUT" <(printf "hi\n")'
hcase gen-max-new-0 ok -- whtlm generate --threads 1 --checkpoint ck-llama --prompt hi --max-new-tokens 0
given 'fixture ck-llama'
hcase gen-batch-0 error --batch -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --batch 0
given 'fixture ck-llama'
hcase gen-batch-neg error --batch -1 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --batch -1
given 'fixture ck-llama; printf "the lord\nsaid unto\n" >p.txt'
hcase gen-batch-huge ok -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompts p.txt --batch 2000000000
# Sampled output for a seed must not depend on how prompts are batched.
given 'fixture ck-llama; printf "the lord\nsaid unto\nin the land\n" >p.txt'
check 'same_tokens b1 b2'
hcase gen-batch-same-samples ok --sh 'whtlm generate --checkpoint ck-llama --prompts p.txt --max-new-tokens 16 --seed 7 --threads 1 --batch 1 >b1 && whtlm generate --checkpoint ck-llama --prompts p.txt --max-new-tokens 16 --seed 7 --threads 1 --batch 3 >b2'
# Streaming must write every byte the model generates, NUL included (ck-nul always emits 0).
given 'fixture ck-nul'
check 'cmp -s "$OUT" <(printf "ab\0\0\0\0\0\n")'
hcase gen-stream-nul ok -- whtlm generate --checkpoint ck-nul --prompt ab --max-new-tokens 5 --temperature 0 --threads 1
given 'fixture ck-nul'
check '"$PY" -c "import json,sys; j=json.loads(open(sys.argv[1]).read()); sys.exit(j[\"tokens\"] != [0]*5)" "$OUT"'
hcase gen-json-nul ok -- whtlm generate --checkpoint ck-nul --prompt ab --max-new-tokens 5 --temperature 0 --threads 1 --json
given 'fixture ck-llama'
hcase gen-prompt-full-context ok -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt "$(printf 'a%.0s' $(seq 256))"
given 'fixture ck-llama'
hcase gen-prompt-over-context error 257 context -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt "$(printf 'a%.0s' $(seq 257))"
given 'fixture ck-llama'
hcase gen-prompts-devzero error /dev/zero -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompts /dev/zero
given 'fixture ck-llama; mkfifo p.txt'
limit 20
hcase gen-prompts-fifo error p.txt -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompts p.txt
given 'fixture ck-llama; mkdir p'
hcase gen-prompts-dir error p -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompts p
given 'fixture ck-llama; printf "one\n\ntwo\n" >p.txt'
hcase gen-prompts-empty-line error p.txt "line 2" -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompts p.txt
given 'fixture ck-llama'
hcase gen-prompts-missing error nothere.txt -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompts nothere.txt
given 'fixture ck-llama'
hcase gen-two-prompt-options error --prompt --prompt-tokens -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --prompt-tokens 1,2
given 'fixture ck-llama; fixture tok.json'
hcase gen-tokenizer-larger error tok.json 300 -- whtlm "${GEN[@]}" --checkpoint ck-llama --tokenizer tok.json --prompt hi
hcase gen-checkpoint-missing error nothere -- whtlm "${GEN[@]}" --checkpoint nothere --prompt hi
given 'echo "not a folder" >ck'
hcase gen-checkpoint-file error ck -- whtlm "${GEN[@]}" --checkpoint ck --prompt hi
given 'fixture ck-llama'
hcase gen-precision-fp16 error --precision fp16 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --precision fp16
given 'fixture ck-llama'
hcase gen-weights-q4 error --weights q4 -- whtlm "${GEN[@]}" --checkpoint ck-llama --prompt hi --weights q4
given 'fixture run'
hcase gen-run-ok ok -- whtlm "${GEN[@]}" --checkpoint run --prompt "the lord" --top-k 5 --top-p 0.9 --repetition-penalty 1.2

# ==== eval ==========================================================================
group eval
given 'fixture ck-llama'
hcase eval-max-windows-neg error --max-windows -1 -- whtlm "${EVAL[@]}" --checkpoint ck-llama --max-windows -1
given 'fixture ck-llama'
hcase eval-max-windows-huge ok -- whtlm eval --data small.txt --split all --threads 1 --seq 32 --checkpoint ck-llama --max-windows 99999999999
given 'fixture ck-llama'
limit 30
hcase eval-batch-0 error --batch -- whtlm "${EVAL[@]}" --checkpoint ck-llama --batch 0
given 'fixture ck-llama'
hcase eval-batch-neg error --batch -1 -- whtlm "${EVAL[@]}" --checkpoint ck-llama --batch -1
given 'fixture ck-llama'
hcase eval-batch-float error --batch 2.5 -- whtlm "${EVAL[@]}" --checkpoint ck-llama --batch 2.5
given 'fixture ck-llama'
hcase eval-threads-empty error --threads -- whtlm "${EVAL[@]}" --checkpoint ck-llama --threads ''
given 'fixture ck-llama'
hcase eval-batch-huge safe --batch -- whtlm "${EVAL[@]}" --checkpoint ck-llama --batch 1000000000
given 'fixture ck-llama'
hcase eval-seq-neg error --seq -1 -- whtlm "${EVAL[@]}" --checkpoint ck-llama --seq -1
given 'fixture ck-llama'
hcase eval-seq-0 error --seq -- whtlm "${EVAL[@]}" --checkpoint ck-llama --seq 0
given 'fixture ck-llama'
hcase eval-seq-over-context error --seq 257 -- whtlm "${EVAL[@]}" --checkpoint ck-llama --seq 257
given 'fixture ck-llama'
hcase eval-split-bogus error --split bogus -- whtlm "${EVAL[@]}" --checkpoint ck-llama --split bogus
given 'fixture ck-llama'
hcase eval-data-devzero error /dev/zero -- whtlm eval --checkpoint ck-llama --split all --threads 1 --data /dev/zero
given 'fixture ck-llama; mkfifo f.txt'
limit 20
hcase eval-data-fifo error f.txt -- whtlm eval --checkpoint ck-llama --split all --threads 1 --data f.txt
given 'fixture ck-llama; : >empty.txt'
hcase eval-data-empty error empty.txt -- whtlm eval --checkpoint ck-llama --split all --threads 1 --data empty.txt
given 'fixture ck-llama'
hcase eval-val-data-missing error nothere.txt -- whtlm eval --checkpoint ck-llama --threads 1 --data small.txt --val-data nothere.txt
given 'fixture ck-llama'
hcase eval-tokenizer-missing error nothere.json -- whtlm "${EVAL[@]}" --checkpoint ck-llama --tokenizer nothere.json
given 'fixture run'
check '"$PY" -c "import json,sys,math; j=json.load(open(sys.argv[1])); sys.exit(not math.isfinite(j[\"loss\"]))" "$OUT"'
hcase eval-run-json ok -- whtlm eval --checkpoint run --data small.txt --val-data val.txt --seq 32 --threads 1 --json

# ==== init and params ===============================================================
group init-params
check '[ "$(json_get ck/config.json max_position_embeddings)" = 32 ]'
hcase init-seq-32 ok -- whtlm init "${TINY[@]}" --seq 32 --out ck
hcase init-scale-init-bogus error --scale-init matched2 -- whtlm init "${TINY[@]}" --proj wht --scale-init matched2 --out ck
hcase init-seq-neg error --seq -1 -- whtlm init "${TINY[@]}" --seq -1 --out ck
hcase init-seq-0 error --seq -- whtlm init "${TINY[@]}" --seq 0 --out ck
hcase init-seq-huge error --seq 1000000000 -- whtlm init "${TINY[@]}" --preset tiny-gpt2 --seq 1000000000 --out ck
hcase init-vocab-neg error --vocab -1 -- whtlm init "${TINY[@]}" --vocab -1 --out ck
hcase init-vocab-huge error --vocab 1000000000 -- whtlm init "${TINY[@]}" --vocab 1000000000 --out ck
hcase init-layers-0 error --layers -- whtlm init "${TINY[@]}" --layers 0 --out ck
hcase init-d-model-huge error --d-model 1048576 -- whtlm init "${TINY[@]}" --d-model 1048576 --out ck
hcase init-heads-3 error --heads 3 -- whtlm init "${TINY[@]}" --heads 3 --out ck
hcase init-wht-width error --d-model 72 -- whtlm init "${TINY[@]}" --d-model 72 --heads 2 --proj wht --out ck
hcase init-seed-neg error --seed -1 -- whtlm init "${TINY[@]}" --seed -1 --out ck
hcase init-preset-bogus error --preset bogus -- whtlm init --preset bogus --out ck
hcase params-seq-neg error --seq -1 -- whtlm params --preset tiny --seq -1
hcase params-seq-0 error --seq -- whtlm params --preset tiny --seq 0
hcase params-seq-over error --seq 1000 -- whtlm params --preset tiny --seq 1000
hcase params-vocab-neg error --vocab -1 -- whtlm params --preset tiny --vocab -1
hcase params-vocab-0 error --vocab -- whtlm params --preset tiny --vocab 0
hcase params-vocab-huge error --vocab 1000000000 -- whtlm params --preset tiny --vocab 1000000000 --json
hcase params-preset-bogus error bogus -- whtlm params --preset bogus
hcase params-proj-bogus error --proj bogus -- whtlm params --preset tiny --proj bogus
hcase params-all-ok ok -- whtlm params --preset all
hcase info-ok ok -- whtlm info
hcase version-ok ok -- whtlm --version
hcase unknown-command error bogus -- whtlm bogus

# ==== bench =========================================================================
group bench
hcase btrain-batch-huge error --batch -- whtlm "${BT[@]}" --threads 1 --batch 1000000
hcase btrain-seq-huge error --seq -- whtlm "${BT[@]}" --threads 1 --seq 100000000
hcase btrain-batch-0 error --batch -- whtlm "${BT[@]}" --threads 1 --batch 0
hcase btrain-seq-neg error --seq -8 -- whtlm "${BT[@]}" --threads 1 --seq -8
hcase btrain-vocab-0 error --vocab -- whtlm "${BT[@]}" --threads 1 --vocab 0
hcase btrain-vocab-huge error --vocab -- whtlm "${BT[@]}" --threads 1 --vocab 1000000000
hcase btrain-reps-0 error --reps -- whtlm "${BT[@]}" --threads 1 --reps 0
hcase btrain-steps-neg error --steps -1 -- whtlm "${BT[@]}" --threads 1 --steps -1
hcase btrain-preset-bogus error bogus -- whtlm "${BT[@]}" --threads 1 --preset bogus
given 'echo "{\"mine\": 1}" >b.json'
hcase btrain-json-existing error b.json -- whtlm "${BT[@]}" --threads 1 --json b.json
given 'echo "{\"mine\": 1}" >b.json'
hcase btrain-json-existing-failing error '--batch|b.json' -- whtlm "${BT[@]}" --threads 1 --batch 0 --json b.json
given 'mkdir b.json'
hcase btrain-json-dir error b.json -- whtlm "${BT[@]}" --threads 1 --json b.json
check '[ "$(wc -l <b.json)" -ge 1 ]'
hcase btrain-ok ok -- whtlm "${BT[@]}" --threads 1 --json b.json
hcase binfer-batch-huge error --batch -- whtlm "${BI[@]}" --threads 1 --batch 100000000 --max-prefill-tokens 1e12 --max-kv-gib 1e6
hcase binfer-context-huge error --context -- whtlm "${BI[@]}" --threads 1 --context 1000000000 --max-kv-gib 1e6
check 'grep -qi skip "$OUT" "$ERR" || [ "$RC" != 0 ]'
hcase binfer-prompt-over-context safe --prompt --context -- whtlm "${BI[@]}" --threads 1 --prompt 64
hcase binfer-decode-0 error --decode -- whtlm "${BI[@]}" --threads 1 --decode 0
hcase binfer-decode-neg error --decode -1 -- whtlm "${BI[@]}" --threads 1 --decode -1
hcase binfer-reps-0 error --reps -- whtlm "${BI[@]}" --threads 1 --reps 0
hcase binfer-batch-0 error --batch -- whtlm "${BI[@]}" --threads 1 --batch 1,0
hcase binfer-vocab-neg error --vocab -1 -- whtlm "${BI[@]}" --threads 1 --vocab -1
hcase binfer-max-kv-nan error --max-kv-gib nan -- whtlm "${BI[@]}" --threads 1 --max-kv-gib nan
hcase binfer-max-prefill-nan error --max-prefill-tokens nan -- whtlm "${BI[@]}" --threads 1 --max-prefill-tokens nan
hcase binfer-context-neg error --context -1 -- whtlm "${BI[@]}" --threads 1 --context -1
given 'echo "{\"mine\": 1}" >b.json'
hcase binfer-json-existing error b.json -- whtlm "${BI[@]}" --threads 1 --json b.json
check '[ "$(wc -l <b.json)" -ge 1 ]'
hcase binfer-ok ok -- whtlm "${BI[@]}" --threads 1 --json b.json
hcase fwht-size-0 error --sizes -- whtlm bench fwht --sizes 0 --rows 1 --reps 1 --min-time 0.001 --threads 1
hcase fwht-size-huge error --sizes 1099511627776 -- whtlm bench fwht --sizes 1099511627776 --rows 1 --reps 1 --min-time 0.001 --threads 1
hcase fwht-rows-huge error --rows -- whtlm bench fwht --sizes 256 --rows 99999999999 --reps 1 --min-time 0.001 --threads 1 --no-dense
hcase fwht-batch-mib-nan error --batch-mib nan -- whtlm "${BF[@]}" --threads 1 --batch-mib nan
hcase fwht-batch-mib-huge error --batch-mib -- whtlm "${BF[@]}" --threads 1 --batch-mib 1e9
limit 30
hcase fwht-min-time-inf error --min-time inf -- whtlm bench fwht --sizes 256 --rows 1 --reps 1 --no-dense --threads 1 --min-time inf
hcase fwht-min-time-nan error --min-time nan -- whtlm bench fwht --sizes 256 --rows 1 --reps 1 --no-dense --threads 1 --min-time nan
hcase fwht-reps-0 error --reps -- whtlm bench fwht --sizes 256 --rows 1 --reps 0 --min-time 0.001 --threads 1
hcase fwht-rows-float error --rows 1.5 -- whtlm "${BF[@]}" --threads 1 --rows 1.5
given 'echo "{\"mine\": 1}" >b.json'
hcase fwht-json-existing error b.json -- whtlm "${BF[@]}" --threads 1 --json b.json

# ==== experiment: plans, experiment.json, re-runs ==================================
group experiment
given 'fixture plan.json'
hcase exp-scale-nan error --scale nan -- whtlm "${EXP[@]}" --out e --scale nan
given 'fixture plan.json'
hcase exp-scale-inf error --scale inf -- whtlm "${EXP[@]}" --out e --scale inf
given 'fixture plan.json'
hcase exp-scale-half error --scale 0.5 -- whtlm "${EXP[@]}" --out e --scale 0.5
given 'fixture plan.json'
hcase exp-scale-huge error --scale 1e300 -- whtlm "${EXP[@]}" --out e --scale 1e300
given 'fixture plan.json; json_set plan.json scale_inits "\"matched\""'
hcase exp-scale-inits-not-list error plan.json scale_inits -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json lr_sweep "{\"factors\": [-1]}"'
hcase exp-lr-sweep-negative error plan.json lr_sweep.factors -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json lr_sweep "{\"factors\": [1, 2], \"fraction\": 2}"'
hcase exp-lr-sweep-fraction-2 error plan.json lr_sweep.fraction -- whtlm "${EXP[@]}" --out e
hcase exp-config-missing error nothere.json -- whtlm experiment --config nothere.json --no-bench --quiet --out e
given ': >plan.json'
hcase exp-config-empty error plan.json -- whtlm "${EXP[@]}" --out e
given 'mkdir plan.json'
hcase exp-config-dir error plan.json -- whtlm "${EXP[@]}" --out e
hcase exp-config-devzero error /dev/zero -- whtlm experiment --config /dev/zero --no-bench --quiet --out e
given 'fixture plan.json'
hcase exp-data-devzero error /dev/zero -- whtlm "${EXP[@]}" --out e --data /dev/zero
given 'mkfifo plan.json'
limit 20
hcase exp-config-fifo error plan.json -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; truncate_to plan.json 200'
hcase exp-config-truncated error plan.json -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json lr 1e999'
hcase exp-config-1e999 error plan.json lr -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json tokens 1e30'
hcase exp-config-tokens-1e30 error plan.json tokens '1e30|1e+30' -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json tokens -1'
hcase exp-config-tokens-neg error plan.json tokens -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json batch 1000000000'
hcase exp-config-batch-huge error plan.json batch -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json sizes.0.layers 1000000000'
hcase exp-config-layers-huge error plan.json layers -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json sizes.0.d_model 1048576'
hcase exp-config-d-model-huge error plan.json d_model -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json sizes.0.seeds 1000000000'
hcase exp-config-seeds-huge error plan.json seeds -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json sizes "[]"'
hcase exp-config-no-sizes error plan.json sizes -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json sizes.0.layers "\"four\""'
hcase exp-config-wrong-type error plan.json layers -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json colour 1'
hcase exp-config-unknown-field error plan.json colour -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_str plan.json sizes.0.name ../../escape'
hcase exp-config-name-escape error plan.json name -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json seq 1000000'
hcase exp-config-seq-over error plan.json seq -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json first_seed -1'
hcase exp-config-seed-neg error plan.json first_seed -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json eval_every 0'
hcase exp-config-eval-every-0 error plan.json eval_every -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json lr_sweep.min_steps -3'
hcase exp-lr-sweep-min-steps-neg error plan.json min_steps -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json tokens_exponent 3'
hcase exp-config-tokens-exponent-3 error plan.json tokens_exponent -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json tokens 1e17'
hcase exp-config-tokens-steps-over error plan.json L1-d64 steps -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json evals -1'
hcase exp-config-evals-neg error plan.json evals -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json device "\"tpu\""'
hcase exp-config-device-unknown error plan.json device tpu -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json precision "\"fp16\""'
hcase exp-config-precision-fp16 error plan.json precision fp16 -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; json_set plan.json data "\"nowhere/shards\""'
hcase exp-config-data-missing error nowhere/shards prepare -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json'
hcase exp-quick-and-config error --quick --config -- whtlm "${EXP[@]}" --quick --out e
given 'fixture plan.json; fixture exp'
allow exp/experiment.json exp/report
check 'grep -q "0 runs trained, 0 resumed, 3 kept" "$ERR"'
hcase exp-rerun-finished ok -- whtlm experiment --config plan.json --no-bench --out exp
given 'fixture plan.json; fixture exp; json_set plan.json lr 0.002'
hcase exp-rerun-other-plan error exp plan -- whtlm "${EXP[@]}" --out exp
# A planned run folder without train_state.json that holds the user's files.
given 'fixture plan.json; fixture exp; d=$(ls -d exp/runs/*dense*); rm -r "$d"/*; echo "my notes" >"$d/notes.txt"'
allow exp/experiment.json exp/report exp/runs/L1-d64-dense-s1/metrics.jsonl exp/runs/L1-d64-dense-s1/train_state.json exp/runs/L1-d64-dense-s1/checkpoints exp/runs/L1-d64-dense-s1/config.json exp/runs/L1-d64-dense-s1/model.safetensors exp/runs/L1-d64-dense-s1/optimizer.safetensors exp/runs/L1-d64-dense-s1/tokenizer.json
hcase exp-rerun-user-files-in-run safe runs notes.txt -- whtlm "${EXP[@]}" --out exp
given 'fixture plan.json; fixture exp; mkdir exp/runs/mine; echo "my notes" >exp/runs/mine/notes.txt'
allow exp/experiment.json exp/report
hcase exp-rerun-user-folder safe mine -- whtlm "${EXP[@]}" --out exp
given 'fixture plan.json; mkdir e; echo "mine" >e/notes.txt'
hcase exp-out-user-folder error e -- whtlm "${EXP[@]}" --out e
given 'fixture plan.json; fixture exp; truncate_to exp/experiment.json 50'
hcase exp-json-truncated error experiment.json -- whtlm "${EXP[@]}" --out exp
given 'fixture plan.json; fixture exp; rm exp/experiment.json; ln -s /dev/zero exp/experiment.json'
hcase exp-json-devzero error experiment.json -- whtlm "${EXP[@]}" --out exp
given 'fixture plan.json; fixture exp; rm exp/experiment.json; mkfifo exp/experiment.json'
limit 20
hcase exp-json-fifo error experiment.json -- whtlm "${EXP[@]}" --out exp
given 'fixture plan.json; fixture exp; json_del exp/experiment.json plan'
hcase exp-json-no-plan error experiment.json plan -- whtlm "${EXP[@]}" --out exp
given 'fixture plan.json; fixture exp; for f in exp/runs/*/train_state.json; do truncate_to "$f" 100; done'
allow -a exp/experiment.json
hcase exp-run-state-truncated error train_state.json -- whtlm "${EXP[@]}" --out exp
given 'fixture plan.json'
hcase exp-print-config-ok ok -- whtlm experiment --config plan.json --print-config

# ==== report ========================================================================
group report
given 'fixture exp; mkdir out; echo "my notes" >out/notes.txt; mkdir out/figures; echo "mine" >out/figures/mine.svg'
check '[ -s out/index.html ]'
hcase report-out-user-folder safe out -- whtlm report exp --out out
given 'fixture exp'
allow exp/report
check '[ -s exp/report/index.html ]'
hcase report-rewrite-ok ok -- whtlm report exp
given 'fixture exp; echo "mine" >out'
hcase report-out-file error out -- whtlm report exp --out out
hcase report-input-missing error nothere -- whtlm report nothere --out out
given 'fixture exp; fixture run'
hcase report-no-out-two-inputs error --out -- whtlm report exp run
given 'fixture run'
check '[ -s out/index.html ]'
hcase report-run-ok ok -- whtlm report run --out out
given 'fixture bench.jsonl; fixture exp'
check '[ -s out/index.html ]'
hcase report-bench-ok ok -- whtlm report exp bench.jsonl --out out
given 'fixture bench.jsonl; echo "garbage" >>bench.jsonl'
hcase report-bench-garbage error bench.jsonl line -- whtlm report bench.jsonl --out out
given ': >bench.jsonl'
hcase report-bench-empty error bench.jsonl -- whtlm report bench.jsonl --out out
hcase report-bench-devzero error /dev/zero -- whtlm report /dev/zero --out out
given 'mkfifo bench.jsonl'
limit 20
hcase report-bench-fifo error bench.jsonl -- whtlm report bench.jsonl --out out
given 'fixture bench.jsonl; sed -i "1s/\"batch\":1/\"batch\":1e999/" bench.jsonl'
hcase report-bench-1e999 error bench.jsonl batch -- whtlm report bench.jsonl --out out
given 'fixture bench.jsonl; sed -i "1s/\"batch\":1/\"batch\":\"one\"/" bench.jsonl'
hcase report-bench-wrong-type error bench.jsonl batch -- whtlm report bench.jsonl --out out
given 'fixture run; rm run/metrics.jsonl; ln -s /dev/zero run/metrics.jsonl'
hcase report-metrics-devzero error metrics.jsonl -- whtlm report run --out out
given 'fixture run; rm run/metrics.jsonl; mkfifo run/metrics.jsonl'
limit 20
hcase report-metrics-fifo error metrics.jsonl -- whtlm report run --out out
given 'fixture run; printf "garbage\n{\"step\": \n" >>run/metrics.jsonl'
check '[ -s out/index.html ]'
hcase report-metrics-garbage ok -- whtlm report run --out out
given 'fixture run; truncate_to run/train_state.json 100'
hcase report-state-truncated error train_state.json -- whtlm report run --out out
given 'fixture run; json_set run/train_state.json step 1e999'
hcase report-state-1e999 error train_state.json step -- whtlm report run --out out
given 'fixture exp; truncate_to exp/experiment.json 50'
hcase report-experiment-json-truncated error experiment.json -- whtlm report exp --out out

# ==== export, import, convert (docs/interop.md) =====================================
# A refused command leaves no output: no file, folder or temporary file beside it
# (no_output lists what the case folder may hold afterwards).
group interop
EXG=(export ck-llama --to gguf --out m.gguf)
given 'fixture ck-llama'
check 'head -c 4 m.gguf | grep -q GGUF'
hcase export-gguf-ok ok -- whtlm "${EXG[@]}" --type q8_0
given 'fixture ck-gpt2'
check '[ -s hf/config.json ] && [ -s hf/model.safetensors ]'
hcase export-hf-ok ok -- whtlm export ck-gpt2 --to hf --type bf16 --out hf
given 'fixture ck-llama; flip_byte ck-llama/model.safetensors -100'
check 'no_output ck-llama'
hcase export-model-flipped error model.safetensors -- whtlm "${EXG[@]}"
given 'fixture ck-llama; truncate_to ck-llama/model.safetensors 200000; rm ck-llama/checksums.json'
check 'no_output ck-llama'
hcase export-hf-model-truncated error model.safetensors -- whtlm export ck-llama --to hf --out hf
given 'fixture ck-llama; rm ck-llama/config.json'
check 'no_output ck-llama'
hcase export-config-missing error config.json -- whtlm "${EXG[@]}"
given 'fixture ck-llama; mkdir m.gguf; echo "mine" >m.gguf/notes.txt'
check 'no_output ck-llama m.gguf && [ -z "$(ls -A m.gguf | grep -v notes.txt)" ]'
hcase export-gguf-out-dir error --out m.gguf -- whtlm "${EXG[@]}"
given 'fixture ck-llama; echo "mine" >m.gguf'
check 'no_output ck-llama m.gguf'
hcase export-gguf-out-existing error --out m.gguf -- whtlm "${EXG[@]}"
given 'fixture ck-llama; echo "mine" >m.gguf'
allow m.gguf
check 'head -c 4 m.gguf | grep -q GGUF && no_output ck-llama m.gguf'
hcase export-gguf-out-force ok -- whtlm "${EXG[@]}" --force
given 'fixture ck-llama'
check 'no_output ck-llama'
hcase export-hf-q8_0 error --type q8_0 -- whtlm export ck-llama --to hf --type q8_0 --out hf
given 'fixture ck-llama'
check 'no_output ck-llama'
hcase export-gguf-keep-wht error --keep-wht -- whtlm "${EXG[@]}" --keep-wht
given 'fixture ck-tok; rm ck-tok/tokenizer.json ck-tok/checksums.json'
check 'no_output ck-tok'
hcase export-gguf-no-tokenizer error ck-tok -- whtlm export ck-tok --to gguf --out m.gguf
# Import: a GGUF file (m.gguf, exported in the case's setup) or a Hugging Face folder (hf/).
GGUF_SETUP='fixture ck-llama; whtlm export ck-llama --to gguf --out m.gguf >/dev/null 2>&1'
HF_SETUP='fixture ck-llama; whtlm export ck-llama --to hf --out hf >/dev/null 2>&1'
given "$GGUF_SETUP"
check '[ -s r/model.safetensors ] && [ -s r/config.json ]'
hcase import-gguf-ok ok -- whtlm import m.gguf --out r
given "$HF_SETUP"
check '[ -s r/model.safetensors ] && [ -s r/config.json ]'
hcase import-hf-ok ok -- whtlm import hf --out r
given "$GGUF_SETUP; truncate_to m.gguf 5000"
check 'no_output ck-llama m.gguf'
hcase import-gguf-truncated error m.gguf -- whtlm import m.gguf --out r
given ': >m.gguf'
check 'no_output m.gguf'
hcase import-gguf-empty error m.gguf -- whtlm import m.gguf --out r
given "$GGUF_SETUP; bin_replace m.gguf 'GGUF\x03\x00\x00\x00' 'GGUF\x02\x00\x00\x00'"
check 'no_output ck-llama m.gguf'
hcase import-gguf-version-2 error m.gguf version -- whtlm import m.gguf --out r
# "bloom": an architecture llama.cpp knows and whtlm does not import (5 bytes, as "llama").
given "$GGUF_SETUP; bin_replace m.gguf '\x05\x00\x00\x00\x00\x00\x00\x00llama' '\x05\x00\x00\x00\x00\x00\x00\x00bloom'"
check 'no_output ck-llama m.gguf'
hcase import-gguf-arch-bloom error m.gguf general.architecture bloom -- whtlm import m.gguf --out r
given "$HF_SETUP; rm hf/config.json"
check 'no_output ck-llama hf'
hcase import-hf-no-config error config.json -- whtlm import hf --out r
given 'mkdir hf; echo "mine" >hf/notes.txt'
check 'no_output hf'
hcase import-dir-no-model error hf -- whtlm import hf --out r
# An index whose shard is outside the folder, there to be read: refused, not read.
given "$HF_SETUP; mv hf/model.safetensors x; echo '{\"metadata\": {}, \"weight_map\": {\"model.norm.weight\": \"../x\"}}' >hf/model.safetensors.index.json"
check 'no_output ck-llama hf x'
hcase import-hf-shard-dotdot error model.safetensors.index.json ../x -- whtlm import hf --out r
given 'mkfifo m.gguf'
limit 20
check 'no_output m.gguf'
hcase import-fifo error m.gguf -- whtlm import m.gguf --out r
check 'no_output'
hcase import-devzero error /dev/zero -- whtlm import /dev/zero --out r
hcase import-missing error nothere.gguf -- whtlm import nothere.gguf --out r
given "$GGUF_SETUP; fixture ck-gpt2"
check 'no_output ck-llama m.gguf ck-gpt2'
hcase import-out-onto-ckpt error --out ck-gpt2 -- whtlm import m.gguf --out ck-gpt2
# Convert: a dense checkpoint only.
given 'fixture ck-llama'
check '[ -s c/model.safetensors ] && [ "$(json_get c/config.json attn_output_projection)" = "\"wht\"" ]'
hcase convert-ok ok -- whtlm convert ck-llama --proj wht --out c
given 'whtlm init --preset tiny --layers 1 --d-model 64 --heads 2 --proj wht --out ck-wht >/dev/null 2>&1'
check 'no_output ck-wht'
hcase convert-not-dense error ck-wht wht -- whtlm convert ck-wht --proj identity --out c
check 'no_output'
hcase convert-missing error nothere -- whtlm convert nothere --proj wht --out c
