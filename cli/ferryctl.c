#include <stdio.h>
int main(void) { puts("ferryctl: not yet"); return 0; }
