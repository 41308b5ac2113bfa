# shellcheck shell=bash
# gpu_env: sourced by bench/gpu_check.sh and bench/gpu_ablation.sh on a lent GPU machine: LD_LIBRARY_PATH gets the
# carried libraries (build/gpu-libs) and a cuBLAS 13 from the machine (the CUDA toolkit, or PyTorch's nvidia-*
# wheels, looked for unless the loader finds one already), since cuBLAS is too large to carry. gpu_libs_check BINARY
# says which libraries it still lacks (status 1).
LIBS=$PWD/build/gpu-libs
# a cuBLAS 13 the loader finds already (the system's, or one on LD_LIBRARY_PATH): nothing to look for
have_cublas() {
    ldconfig -p 2>/dev/null | grep -q 'libcublasLt\.so\.13' && return 0
    local d IFS=:
    for d in ${LD_LIBRARY_PATH:-}; do [ -e "$d/libcublasLt.so.13" ] && return 0; done
    return 1
}
if ! have_cublas; then
    for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda-13*/targets/x86_64-linux/lib; do
        [ -e "$d/libcublasLt.so.13" ] && { LIBS=$LIBS:$d; break; }
    done
    case $LIBS in *:*) ;; *)
        f=$(timeout 60 find /usr /opt /root /home -name 'libcublasLt.so.13*' -not -path '*/proc/*' 2>/dev/null | head -1)
        [ -n "$f" ] && LIBS=$LIBS:$(dirname "$f") ;;
    esac
fi
export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

gpu_libs_check() {
    local missing
    missing=$(ldd "$1" | awk '/not found/ {print $1}')
    [ -z "$missing" ] && return 0
    echo "libraries not found for $1: $missing"
    echo "hint: install CUDA 13's cuBLAS (e.g. pip install nvidia-cublas) and rerun, or set LD_LIBRARY_PATH to it"
    return 1
}
