# minirun's trampoline: the source of the machine code in trampoline.py (_CODE).
# x86-64 Linux, no libc, no relocations: every datum is reached rip-relative.
# Rebuild after a change, then paste the hex into trampoline.py:
#     as --64 -o t.o trampoline.s && objcopy -O binary -j .text t.o t.bin && xxd -p t.bin
# tests/unit/test_trampoline.py assembles this file (when `as` exists) and
# checks that _CODE is what it says.
#
# argv[0] picks the mode; any other argv[0] is refused (exit 126), so that
# `#!/proc/self/exe` ends at once instead of exec'ing itself in a loop.
#   minirun-exec PATH ARGV...   fd 3 close-on-exec; execve(PATH, ARGV, envp);
#                               on failure one byte, the errno, on fd 3; exit 127
#   minirun-init PATH ARGV...   run --init: stay as the container's PID 1, run the
#                               command as a child in its own process group (the
#                               terminal's foreground one), forward every signal
#                               to it, reap every orphan, exit as it did
#   minirun-wait PATH ARGV...   exec's waiter, outside the container's PID
#                               namespace: the same, but the command gets a
#                               session of its own and the terminal on fd 0
# The supervising modes drop every capability and stay non-dumpable. A setup
# step that fails before the command runs is reported on fd 3 as three bytes,
# "I", the step, the errno (trampoline.decode); a failure later is a line on
# fd 2, the command is killed and the exit code is 125.

        .intel_syntax noprefix
        .text
        .globl _start
_start:
        mov     rbp, rsp                    # argc, argv..., 0, envp..., as the kernel laid them
        mov     rax, [rbp+8]                # argv[0]
        mov     rbx, [rax]
        movabs  rcx, 0x2d6e7572696e696d     # "minirun-", little-endian
        cmp     rbx, rcx
        jne     refuse
        movzx   ebx, byte ptr [rax+8]
        cmp     ebx, 'e'
        je      exec
        xor     r12d, r12d                  # r12: 0 init, 1 wait
        cmp     ebx, 'i'
        je      supervise
        inc     r12d
        cmp     ebx, 'w'
        je      supervise
refuse:
        mov     edi, 2
        lea     rsi, [rip+refused]
        mov     edx, refused_end - refused
        mov     eax, 1                      # write
        syscall
        mov     edi, 126
        jmp     quit

exec:
        mov     edi, 3
        mov     esi, 2                      # F_SETFD
        mov     edx, 1                      # FD_CLOEXEC
        mov     eax, 72                     # fcntl
        syscall
        mov     rcx, [rbp]                  # argc
        mov     rdi, [rbp+16]               # argv[1]
        lea     rsi, [rbp+24]               # &argv[2]
        lea     rdx, [rbp+rcx*8+16]         # envp
        mov     eax, 59                     # execve
        syscall
        neg     eax
        push    rax
        mov     edi, 3
        mov     rsi, rsp
        mov     edx, 1
        mov     eax, 1                      # write(3, &errno, 1)
        syscall
        mov     edi, 127
quit:
        mov     eax, 231                    # exit_group
        syscall
        mov     eax, 60                     # a profile refused it: exit, then a fault,
        syscall                             # never on into the code below
        ud2

supervise:
        sub     rsp, 256                    # scratch, zeroed: siginfo 0..127, status 128,
        mov     rdi, rsp                    # capset header 136, data 144..167,
        mov     ecx, 32                     # sigaction 168..199, report 200..202
        xor     eax, eax
        rep     stosq
        mov     ebx, 1
        mov     edi, 4                      # PR_SET_DUMPABLE, 0
        xor     esi, esi
        mov     eax, 157                    # prctl
        syscall
        test    rax, rax
        jnz     early_failure
        inc     ebx
        mov     edi, 17                     # SIGCHLD to SIG_DFL: an ignored SIGCHLD
        lea     rsi, [rsp+168]              # would reap the command behind our back
        xor     edx, edx
        mov     r10d, 8
        mov     eax, 13                     # rt_sigaction
        syscall
        test    rax, rax
        jnz     early_failure
        inc     ebx
        xor     edi, edi                    # SIG_BLOCK every signal: they are taken
        lea     rsi, [rip+every_signal]     # with rt_sigtimedwait below
        xor     edx, edx
        mov     r10d, 8
        mov     eax, 14                     # rt_sigprocmask
        syscall
        test    rax, rax
        jnz     early_failure
        inc     ebx
        mov     edi, 17                     # clone(SIGCHLD): a fork
        xor     esi, esi
        xor     edx, edx
        xor     r10d, r10d
        xor     r8d, r8d
        mov     eax, 56
        syscall
        test    rax, rax
        js      early_failure
        jz      child
        mov     r13, rax                    # the command's pid
        inc     ebx
        mov     dword ptr [rsp+136], 0x20080522   # _LINUX_CAPABILITY_VERSION_3, pid 0
        lea     rdi, [rsp+136]
        lea     rsi, [rsp+144]              # every set empty
        mov     eax, 126                    # capset
        syscall
        test    rax, rax
        jnz     kill_early
        mov     rax, -1                     # capget over a buffer of ones: a capset that a
        mov     [rsp+144], rax              # profile answered "0" without making it shows
        mov     [rsp+152], rax
        mov     [rsp+160], rax
        lea     rdi, [rsp+136]
        lea     rsi, [rsp+144]
        mov     eax, 125                    # capget
        syscall
        test    rax, rax
        jnz     kill_early
        mov     rax, [rsp+144]
        or      rax, [rsp+152]
        or      rax, [rsp+160]
        jz      dropped
        mov     rax, -1                     # EPERM
        jmp     kill_early
dropped:
        mov     edi, 3                      # the report pipe is the command's now
        mov     eax, 3                      # close
        syscall
        mov     edi, 15                     # PR_SET_NAME argv[0], for ps (else the
        mov     rsi, [rbp+8]                # memfd's number)
        mov     eax, 157
        syscall
wait_signal:
        lea     rdi, [rip+every_signal]
        mov     rsi, rsp                    # siginfo
        xor     edx, edx                    # no timeout
        mov     r10d, 8
        mov     eax, 128                    # rt_sigtimedwait
        syscall
        cmp     rax, -4                     # EINTR (a ptrace stop, say): again
        je      wait_signal
        test    rax, rax                    # an error, or 0 from a profile's fake
        jle     late_failure                # success: no signal number at all
        cmp     rax, 64
        ja      late_failure
        cmp     eax, 17
        je      reap
        mov     rdi, r13                    # any other: the command's
        mov     esi, eax
        mov     eax, 62                     # kill
        syscall
        jmp     wait_signal
reap:
        mov     rdi, -1
        lea     rsi, [rsp+128]
        mov     edx, 3                      # WNOHANG | WUNTRACED
        xor     r10d, r10d
        mov     eax, 61                     # wait4
        syscall
        test    rax, rax
        jz      wait_signal                 # nothing more has ended
        js      late_failure                # ECHILD with the command unreaped: refused
        cmp     rax, r13
        jne     reap                        # an orphan
        mov     eax, [rsp+128]
        mov     ecx, eax
        and     ecx, 0x7f
        jz      exited
        cmp     ecx, 0x7f                   # stopped, not ended
        jne     killed
        shr     eax, 8                      # by ^Z (SIGTSTP) or a background read or
        and     eax, 0xff                   # write (SIGTTIN, SIGTTOU): the user has no
        sub     eax, 20                     # shell here to `fg` it, so it goes on
        cmp     eax, 2
        ja      reap
        mov     rdi, r13
        mov     esi, 18                     # SIGCONT
        mov     eax, 62                     # kill
        syscall
        jmp     reap
killed:
        lea     edi, [rcx+128]              # killed by signal N: 128+N
        jmp     quit
exited:
        shr     eax, 8
        movzx   edi, al
        jmp     quit

child:
        mov     rsp, rbp
        test    r12d, r12d
        jnz     own_session
        xor     edi, edi                    # init: a group of its own, which takes
        xor     esi, esi                    # the terminal (SIGTTOU is blocked here)
        mov     eax, 109                    # setpgid
        syscall
        mov     eax, 39                     # getpid
        syscall
        push    rax
        xor     edi, edi
        mov     esi, 0x5410                 # TIOCSPGRP (ENOTTY without a terminal)
        mov     rdx, rsp
        mov     eax, 16                     # ioctl
        syscall
        pop     rax
        jmp     unmask
own_session:
        mov     eax, 112                    # setsid
        syscall
        xor     edi, edi
        mov     esi, 0x540e                 # TIOCSCTTY (ENOTTY without a terminal)
        xor     edx, edx
        mov     eax, 16
        syscall
unmask:
        mov     edi, 1                      # PR_SET_PDEATHSIG, SIGKILL
        mov     esi, 9
        mov     eax, 157
        syscall
        mov     edi, 2                      # SIG_SETMASK: none blocked
        lea     rsi, [rip+no_signal]
        xor     edx, edx
        mov     r10d, 8
        mov     eax, 14
        syscall
        jmp     exec

kill_early:
        mov     r14, rax
        mov     rdi, r13
        mov     esi, 9
        mov     eax, 62                     # kill(command, SIGKILL)
        syscall
        mov     rax, r14
early_failure:                              # ebx: the step, rax: -errno
        neg     eax
        mov     byte ptr [rsp+200], 'I'
        mov     byte ptr [rsp+201], bl
        mov     byte ptr [rsp+202], al
        mov     edi, 3
        lea     rsi, [rsp+200]
        mov     edx, 3
        mov     eax, 1
        syscall
        mov     edi, 125
        jmp     quit

late_failure:
        mov     edi, 2
        lea     rsi, [rip+refused_call]
        mov     edx, refused_call_end - refused_call
        mov     eax, 1
        syscall
        mov     rdi, r13
        mov     esi, 9
        mov     eax, 62
        syscall
        mov     edi, 125
        jmp     quit

        .balign 8
every_signal:
        .quad   0xffffffffffffffff
no_signal:
        .quad   0
refused:
        .ascii  "minirun: the command led back to minirun's exec trampoline (/proc/self/exe?): not running it\n"
refused_end:
refused_call:
        .ascii  "minirun: the container's init could not wait for its command (does the seccomp profile refuse rt_sigtimedwait or wait4?): killing it\n"
refused_call_end:
