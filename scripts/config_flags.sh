# shellcheck shell=bash
# config_flags NAME: the hgridctl submit model flags of hgrid-worker's
# --config NAME (model/config.c), so that workers given --config NAME train
# the job's model (a worker refuses a --config that differs from its job).
config_flags() {
  local tiny=(--num-layers 2 --hidden-size 128 --num-attention-heads 4 --vocab-size 256
              --seq-length 64 --encoder-num-layers 2 --encoder-hidden-size 64
              --encoder-num-attention-heads 2 --image-size 16 --patch-size 4)
  case $1 in
    tiny) echo "${tiny[@]}" ;;
    tiny-moe) echo "${tiny[@]}" --num-experts 8 --moe-router-topk 2 ;;
    small|job) ;; # the layout defaults
    small-moe) echo --num-experts 8 --moe-router-topk 2 ;;
    1b) echo --num-layers 24 --hidden-size 2048 --num-attention-heads 16 --seq-length 2048 \
          --encoder-hidden-size 768 --encoder-num-attention-heads 12 ;;
    *) echo "config_flags: no config '$1'" >&2; return 1 ;;
  esac
}
