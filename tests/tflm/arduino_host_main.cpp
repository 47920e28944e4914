// arduino_host_main.cpp: runs a sketch's setup() once and loop() N times (argv[1], default 8).
#include <stdlib.h>

#include "Arduino.h"

HostSerial Serial;
static unsigned long now_us = 0;
unsigned long micros() { return now_us += 7; }
unsigned long millis() { return now_us / 1000; }
void delay(unsigned long ms) { now_us += ms * 1000; }

void setup();
void loop();

int main(int argc, char** argv) {
  long n = argc > 1 ? strtol(argv[1], nullptr, 10) : 8;
  setup();
  for (long i = 0; i < n; ++i) loop();
  fflush(stdout);
  return 0;
}
