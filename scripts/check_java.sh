#!/usr/bin/env bash
# Stop with one clear sentence when Java 17 or newer is not on the PATH (Spark 4 needs it).
set -u
if ! command -v java >/dev/null 2>&1; then
  echo "Java 17 is required and was not found: install OpenJDK 17 (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless; macOS: brew install openjdk@17) and run make again." >&2
  exit 1
fi
version=$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
major=${version%%.*}
if [ -z "$major" ] || [ "$major" -lt 17 ] 2>/dev/null; then
  echo "Java 17 or newer is required but java reports version '${version}': install OpenJDK 17 (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless) and put it first on PATH." >&2
  exit 1
fi
