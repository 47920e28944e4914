/* Minimal Cortex-M4 startup for qemu mps2-an386 with newlib semihosting (rdimon). */
#include <stdint.h>

extern int main(void);
extern void initialise_monitor_handles(void);
extern uint32_t __etext, __data_start__, __data_end__, __bss_start__, __bss_end__, __stack;

void Reset_Handler(void);
void Default_Handler(void);

void Reset_Handler(void)
{
    const uint32_t *src = &__etext;
    uint32_t *dst;
    for (dst = &__data_start__; dst < &__data_end__;) {
        *dst++ = *src++;
    }
    for (dst = &__bss_start__; dst < &__bss_end__;) {
        *dst++ = 0;
    }
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20); /* CPACR: full access to CP10/CP11 */
    __asm__ volatile("dsb\n\tisb");
    initialise_monitor_handles();
    (void)main();
    /* semihosting SYS_EXIT, ADP_Stopped_ApplicationExit */
    __asm__ volatile("mov r0, #0x18\n\tldr r1, =0x20026\n\tbkpt 0xab" : : : "r0", "r1");
    for (;;) {
    }
}

void Default_Handler(void)
{
    for (;;) {
    }
}

__attribute__((section(".vectors"), used)) const void *const el_vectors[16] = {
    &__stack, (const void *)Reset_Handler, (const void *)Default_Handler,
    (const void *)Default_Handler};
