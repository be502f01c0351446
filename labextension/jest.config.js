// The frontend's unit tests (the store, the dialogs, the panel) with JupyterLab's test tooling.
const jestJupyterLab = require('@jupyterlab/testing/lib/jest-config');

module.exports = {
  ...jestJupyterLab(__dirname),
  reporters: ['default'],
  testRegex: 'src/__tests__/.*\\.spec\\.ts$'
};
