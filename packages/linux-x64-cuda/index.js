'use strict';
// The prebuilt CUDA addon of nemotron-node. nemotron-node finds it itself (lib/cuda.ts); this module
// only says where it is and what it needs, without loading it.
const path = require('node:path');
const pkg = require('./package.json');

module.exports = {
  binary: path.join(__dirname, pkg.nemotronNode.binary),
  cudaRuntime: pkg.nemotronNode.cudaRuntime,
  cudaArchitectures: pkg.nemotronNode.cudaArchitectures.split(';'),
  requiredDriver: pkg.nemotronNode.requiredDriver,
};
