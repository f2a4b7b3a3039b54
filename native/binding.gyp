{
  "targets": [
    {
      "target_name": "outpost_native",
      "sources": ["outpost_native.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]
    }
  ]
}
