# bcryptprimitives.dll for Wine 8: just ProcessPrng.
#
# Windows 10+ ships bcryptprimitives.dll and Rust's standard library (1.78+)
# imports ProcessPrng from it, so every Rust-built extension (cryptography's
# _rust.pyd, which trustme needs) fails to load under Wine 8 with "DLL load
# failed: module not found". Wine 9 added the DLL; Debian 12 has Wine 8. The
# lane assembles this stand-in with binutils-mingw-w64 and puts it in the Wine
# prefix's system32, where the real one lives on Windows.
#
# BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
# Fills data with len random bytes through advapi32!SystemFunction036
# (RtlGenRandom). That takes a 32-bit length, so requests go in 1 GiB chunks.
# Returns TRUE (1), or FALSE (0) if RtlGenRandom ever fails.

    .intel_syntax noprefix
    .text
    .globl ProcessPrng
ProcessPrng:
    push rbx                       # rbx = next byte to fill
    push rsi                       # rsi = bytes still to fill
    push rdi                       # rdi = size of the current chunk
    sub rsp, 32                    # shadow space; rsp is 16-byte aligned at the call
    mov rbx, rcx
    mov rsi, rdx
.Lnext:
    test rsi, rsi
    jz .Lok
    mov rdi, rsi
    mov eax, 0x40000000
    cmp rdi, rax
    cmova rdi, rax
    mov rcx, rbx
    mov edx, edi
    call [rip + __imp_SystemFunction036]
    test al, al                    # BOOLEAN: only the low byte is defined
    jz .Lfail
    add rbx, rdi
    sub rsi, rdi
    jmp .Lnext
.Lok:
    mov eax, 1
    jmp .Lout
.Lfail:
    xor eax, eax
.Lout:
    add rsp, 32
    pop rdi
    pop rsi
    pop rbx
    ret

# Nothing to set up or tear down per process or thread.
    .globl DllMain
DllMain:
    mov eax, 1
    ret
