#include <stdio.h>
int main(void) { puts("ferryd: not yet"); return 0; }
