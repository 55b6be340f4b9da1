import { transportSuite } from './suite.js';

transportSuite('longpoll');
