// Arduino.h: the smallest Arduino core a generated edgelstm sketch needs, for running it on a
// Linux host in tests (not an Arduino port). Serial writes to stdout; time is a counter.
#ifndef EDGELSTM_TEST_ARDUINO_H_
#define EDGELSTM_TEST_ARDUINO_H_

#include <math.h>
#include <stdint.h>
#include <stdio.h>

class HostSerial {
 public:
  void begin(unsigned long baud) { (void)baud; }
  int available() { return 0; }
  int read() { return -1; }
  void print(const char* s) { fputs(s, stdout); }
  void print(char c) { fputc(c, stdout); }
  void print(int v) { printf("%d", v); }
  void print(unsigned int v) { printf("%u", v); }
  void print(long v) { printf("%ld", v); }
  void print(unsigned long v) { printf("%lu", v); }
  void print(double v, int digits = 2) { printf("%.*f", digits, v); }
  void println() { fputc('\n', stdout); }
};

extern HostSerial Serial;
unsigned long micros();
unsigned long millis();
void delay(unsigned long ms);

#endif  // EDGELSTM_TEST_ARDUINO_H_
