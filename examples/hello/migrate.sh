# The oneshot of the hello example: runs once per deployed release, then exits 0.
echo "migrating for release ${LAIN_APP_RELEASE_VERSION} ($(cat build-info.txt))"
